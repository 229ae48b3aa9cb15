//! Helpers to edit a YAML document by key path (`backends[1].health.interval`), the same
//! spelling the config and cluster problems use.

use serde_yaml::Value;

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
}

/// `a.b[2].c` as steps.
pub(crate) fn steps(path: &str) -> Vec<Step> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            out.push(Step::Key(name.to_owned()));
        }
        for idx in rest.split('[') {
            let idx = idx.trim_end_matches(']');
            if !idx.is_empty() {
                out.push(Step::Index(idx.parse().expect("index in a test key path")));
            }
        }
    }
    out
}

/// Every leaf (scalar) of `doc` with its key path, in document order.
pub(crate) fn leaves(doc: &Value) -> Vec<String> {
    fn walk(v: &Value, path: &str, out: &mut Vec<String>) {
        match v {
            Value::Mapping(m) => {
                for (k, v) in m {
                    let k = k.as_str().unwrap_or("?");
                    let p = if path.is_empty() {
                        k.to_owned()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(v, &p, out);
                }
            }
            Value::Sequence(s) => {
                for (i, v) in s.iter().enumerate() {
                    walk(v, &format!("{path}[{i}]"), out);
                }
            }
            _ => out.push(path.to_owned()),
        }
    }
    let mut out = Vec::new();
    walk(doc, "", &mut out);
    out
}

/// Replace the value at `path` (which must exist) with `new`.
pub(crate) fn set(doc: &mut Value, path: &str, new: Value) {
    *at_mut(doc, path) = new;
}

/// The key paths of every mapping in `doc` ("" for the document itself).
pub(crate) fn mappings(doc: &Value) -> Vec<String> {
    fn walk(v: &Value, path: &str, out: &mut Vec<String>) {
        match v {
            Value::Mapping(m) => {
                out.push(path.to_owned());
                for (k, v) in m {
                    let k = k.as_str().unwrap_or("?");
                    let p = if path.is_empty() {
                        k.to_owned()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(v, &p, out);
                }
            }
            Value::Sequence(s) => {
                for (i, v) in s.iter().enumerate() {
                    walk(v, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(doc, "", &mut out);
    out
}

/// The value at `path`, which must exist.
fn at_mut<'a>(doc: &'a mut Value, path: &str) -> &'a mut Value {
    let mut v = doc;
    for step in steps(path) {
        v = match step {
            Step::Key(k) => v
                .as_mapping_mut()
                .and_then(|m| m.get_mut(k.as_str()))
                .expect("key present"),
            Step::Index(i) => v
                .as_sequence_mut()
                .and_then(|s| s.get_mut(i))
                .expect("index present"),
        };
    }
    v
}

/// Add `key: value` to the mapping at `path` ("" for the document); returns the new key's
/// path.
pub(crate) fn add_key(doc: &mut Value, path: &str, key: &str, value: Value) -> String {
    at_mut(doc, path)
        .as_mapping_mut()
        .expect("a mapping path")
        .insert(Value::String(key.to_owned()), value);
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}
