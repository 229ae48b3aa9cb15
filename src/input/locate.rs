//! Where each key of a YAML document is: a map from key paths (`backends[1].address`) to
//! line and column, so that problems found after deserializing can still point at the text.
//!
//! serde_yaml keeps no positions once a value is deserialized; yaml-rust2's event parser
//! gives a marker for every node, which is all this needs.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

/// Positions of the values of a document, by key path.
#[derive(Debug, Default)]
pub(crate) struct Locations {
    values: HashMap<String, Position>,
    keys: HashMap<String, Position>,
}

impl Locations {
    /// Index `src`. A document that does not parse yields an empty index (serde_yaml reports
    /// the syntax error with its own position).
    pub(crate) fn index(src: &str) -> Self {
        let mut walker = Walker::default();
        let mut parser = Parser::new_from_str(src);
        if parser.load(&mut walker, false).is_err() {
            return Self::default();
        }
        Self {
            values: walker.values,
            keys: walker.keys,
        }
    }

    /// The position of the key that ends `path` (`backends[0].adress` points at `adress`),
    /// if the document has it.
    pub(crate) fn key(&self, path: &str) -> Option<Position> {
        self.keys.get(path).copied()
    }

    /// Whether the document writes the key `path` itself.
    pub(crate) fn has_key(&self, path: &str) -> bool {
        self.keys.contains_key(path)
    }

    /// The position of the value at `path`; for a missing value, that of the key of its
    /// closest present ancestor.
    pub(crate) fn find(&self, path: &str) -> Position {
        if let Some(pos) = self.values.get(path) {
            return *pos;
        }
        let mut path = path;
        loop {
            if let Some(pos) = self.keys.get(path).or_else(|| self.values.get(path)) {
                return *pos;
            }
            match path.rfind(['.', '[']) {
                Some(cut) => path = &path[..cut],
                None => return self.values.get("").copied().unwrap_or_default(),
            }
        }
    }
}

/// One open collection while walking the events.
#[derive(Debug)]
enum Frame {
    /// In a mapping: the key just read, if the next scalar is its value; `fresh` until the
    /// first key.
    Map {
        path: String,
        key: Option<String>,
        fresh: bool,
    },
    /// In a sequence: the index of the next item.
    Seq { path: String, next: usize },
}

#[derive(Debug, Default)]
struct Walker {
    stack: Vec<Frame>,
    values: HashMap<String, Position>,
    keys: HashMap<String, Position>,
}

impl Walker {
    /// The path of the node that starts now, or `None` if it is a mapping key.
    fn next_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, key, .. }) => key.take().map(|k| {
                if path.is_empty() {
                    k
                } else {
                    format!("{path}.{k}")
                }
            }),
        }
    }

    fn record(&mut self, path: &str, mark: Marker) {
        self.values
            .entry(path.to_owned())
            .or_insert_with(|| position(mark));
    }
}

fn position(mark: Marker) -> Position {
    Position {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, ..) => match self.next_path() {
                Some(path) => self.record(&path, mark),
                None => {
                    // A mapping key: remember it for the value that follows.
                    if let Some(Frame::Map { path, key, fresh }) = self.stack.last_mut() {
                        let full = if path.is_empty() {
                            text.clone()
                        } else {
                            format!("{path}.{text}")
                        };
                        self.keys.entry(full).or_insert_with(|| position(mark));
                        // A block mapping's start event is marked at its first `:`; the
                        // mapping starts where its first key does.
                        if std::mem::take(fresh) {
                            let here = position(mark);
                            if let Some(start) = self.values.get_mut(path.as_str()) {
                                if (here.line, here.column) < (start.line, start.column) {
                                    *start = here;
                                }
                            }
                        }
                        *key = Some(text);
                    }
                }
            },
            Event::MappingStart(..) => {
                let path = self.next_path().unwrap_or_default();
                self.record(&path, mark);
                self.stack.push(Frame::Map {
                    path,
                    key: None,
                    fresh: true,
                });
            }
            Event::SequenceStart(..) => {
                let path = self.next_path().unwrap_or_default();
                self.record(&path, mark);
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Alias(_) => {
                let _ = self.next_path();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_values_and_falls_back_to_ancestors() {
        let src = "listen: [\"127.0.0.1:1\"]\nbackends:\n  - name: a\n    address: x:1\n  - name: b\n    address: \"y:2\"\ntimeouts:\n  idle: 1h\n";
        let loc = Locations::index(src);
        assert_eq!(
            loc.find("backends[1].address"),
            Position {
                line: 6,
                column: 14
            }
        );
        assert_eq!(
            loc.find("backends[0].name"),
            Position {
                line: 3,
                column: 11
            }
        );
        assert_eq!(loc.find("timeouts.idle"), Position { line: 8, column: 9 });
        assert_eq!(
            loc.find("listen[0]"),
            Position {
                line: 1,
                column: 10
            }
        );
        // Missing key: the closest ancestor.
        assert_eq!(loc.find("timeouts.drain"), Position { line: 7, column: 1 });
    }
}
