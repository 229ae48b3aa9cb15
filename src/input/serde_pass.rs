//! The serde pass: YAML text into a file's raw serde type (unknown keys denied), with every
//! unknown key reported instead of only the first.
//!
//! serde stops at the first unknown key. So each time it does, the key is recorded, taken out
//! of the document, and the rest is read again, until the document reads or another kind of
//! error stops it. Positions always come from the original text ([`Locations`]), since the
//! document read again is a re-serialized copy.

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::locate::{Locations, Position};
use super::problem::Problem;

/// More unknown keys than this in one file are not worth listing one by one.
const MAX_UNKNOWN_KEYS: usize = 50;

/// Read `src` as a `T`; `None` when serde cannot (the problems say why). Unknown keys are
/// problems even when the rest reads.
pub(crate) fn deserialize<T: DeserializeOwned>(
    src: &str,
    locations: &Locations,
) -> (Option<T>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut first = match serde_yaml::from_str::<T>(src) {
        Ok(v) => return (Some(v), problems),
        Err(err) => err,
    };
    // The document as a value, to take unknown keys out of. It parsed as YAML if the first
    // error is about a key; a syntax error ends here.
    let mut doc: Option<Value> = None;
    let mut original = true;
    loop {
        let (key, message) = split_path(&strip_location(&first.to_string()));
        let serde_position = first.location().map(|l| Position {
            line: l.line(),
            column: l.column(),
        });
        let unknown = unknown_field(&message).map(|field| join(&key, field));
        let position = match &unknown {
            Some(full) => locations.key(full),
            None => None,
        }
        .or(if original { serde_position } else { None })
        .unwrap_or_else(|| locations.find(&key));
        problems.push(Problem {
            position,
            key: key.clone(),
            message,
        });
        let Some(full) = unknown else {
            return (None, problems);
        };
        if problems.len() >= MAX_UNKNOWN_KEYS {
            return (None, problems);
        }
        let doc = match &mut doc {
            Some(d) => d,
            None => match serde_yaml::from_str::<Value>(src) {
                Ok(v) => doc.insert(v),
                Err(_) => return (None, problems),
            },
        };
        if !remove(doc, &full) {
            return (None, problems);
        }
        original = false;
        match serde_yaml::to_string(doc).map(|text| serde_yaml::from_str::<T>(&text)) {
            Ok(Ok(v)) => return (Some(v), problems),
            Ok(Err(err)) => first = err,
            Err(_) => return (None, problems),
        }
    }
}

/// The field name of serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(field, _)| field)
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// serde_yaml puts the key path first, separated by ": ", unless the error is at the root.
fn split_path(message: &str) -> (String, String) {
    match message.split_once(": ") {
        Some((key, rest)) if !key.is_empty() && !key.contains(' ') => {
            (key.to_owned(), rest.to_owned())
        }
        _ => (String::new(), message.to_owned()),
    }
}

/// Remove serde_yaml's " at line L column C" (the position is reported separately).
fn strip_location(message: &str) -> String {
    let Some(start) = message.find(" at line ") else {
        return message.to_owned();
    };
    let rest = &message[start + " at line ".len()..];
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix(" column ").unwrap_or(rest);
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    format!("{}{rest}", &message[..start])
}

/// Take the key at `path` (`backends[0].adress`) out of `doc`; false if it is not there.
fn remove(doc: &mut Value, path: &str) -> bool {
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (name, mut indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        steps.push(Step::Key(name));
        while let Some(rest) = indexes.strip_prefix('[') {
            let Some((n, after)) = rest.split_once(']') else {
                return false;
            };
            let Ok(n) = n.parse::<usize>() else {
                return false;
            };
            steps.push(Step::Index(n));
            indexes = after;
        }
    }
    let Some(Step::Key(last)) = steps.pop() else {
        return false;
    };
    let mut node = doc;
    for step in steps {
        let next = match step {
            Step::Key(k) => node.get_mut(k),
            Step::Index(i) => node.get_mut(i),
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    node.as_mapping_mut()
        .is_some_and(|m| m.remove(last).is_some())
}

enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Top {
        a: u32,
        #[serde(default)]
        list: Vec<Item>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Item {
        name: String,
    }

    fn run(src: &str) -> (Option<Top>, Vec<String>) {
        let (v, problems) = deserialize::<Top>(src, &Locations::index(src));
        let lines = problems
            .iter()
            .map(|p| format!("{}:{}: {p}", p.position.line, p.position.column))
            .collect();
        (v, lines)
    }

    #[test]
    fn every_unknown_key_is_reported_and_the_rest_still_reads() {
        let (v, p) = run("a: 1\nb: 2\nlist:\n  - name: x\n    nmae: y\n  - {name: z, extra: 1}\n");
        assert_eq!(
            p,
            [
                "2:1: unknown field `b`, expected `a` or `list`",
                "5:5: list[0]: unknown field `nmae`, expected `name`",
                "6:15: list[1]: unknown field `extra`, expected `name`",
            ]
        );
        assert_eq!(
            v,
            Some(Top {
                a: 1,
                list: vec![Item { name: "x".into() }, Item { name: "z".into() }]
            })
        );
    }

    #[test]
    fn an_unknown_key_does_not_hide_a_missing_one() {
        let (v, p) = run("b: 2\nlist: [{nmae: y}]\n");
        assert_eq!(v, None);
        assert_eq!(
            p,
            [
                "1:1: unknown field `b`, expected `a` or `list`",
                "2:9: list[0]: unknown field `nmae`, expected `name`",
                "2:8: list[0]: missing field `name`",
            ]
        );
    }
}
