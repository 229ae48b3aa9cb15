//! The positioned problem list: every problem found in one file, each with its line, column
//! and key path, printed one per line as `file:line:col: key.path: problem`.

use std::fmt;

use super::locate::{Locations, Position};

/// One problem, at a place in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where.
    pub position: Position,
    /// The key path, e.g. `backends[1].address`; empty for the document itself.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// `key: message` (the key left out when empty); the file and position are added by
/// [`Problems`].
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems {
    /// The file name (or `<string>`) the problems are in.
    pub origin: String,
    /// The problems, in file order.
    pub list: Vec<Problem>,
}

impl Problems {
    /// `list` sorted into file order (a stable sort: problems at one place keep the order in
    /// which they were found).
    pub fn new(origin: &str, mut list: Vec<Problem>) -> Self {
        list.sort_by_key(|p| (p.position.line, p.position.column));
        Self {
            origin: origin.to_owned(),
            list,
        }
    }
}

/// One line per problem: `origin:line:col: key: message`.
impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.list.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: {p}",
                self.origin, p.position.line, p.position.column
            )?;
        }
        Ok(())
    }
}

/// Collects the problems of one text, placing each by its key path.
#[derive(Debug)]
pub(crate) struct Collector {
    locations: Locations,
    problems: Vec<Problem>,
}

impl Collector {
    /// A collector for `src`, starting with the problems serde already found.
    pub(crate) fn new(locations: Locations, problems: Vec<Problem>) -> Self {
        Self {
            locations,
            problems,
        }
    }

    /// Record a problem with the value at `key` (or, when it is missing, with the closest
    /// key present).
    pub(crate) fn push(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            position: self.locations.find(key),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// Record a missing required key and pass `v` on.
    pub(crate) fn required<T>(&mut self, v: Option<T>, key: &str) -> Option<T> {
        if v.is_none() {
            self.push(key, "is required");
        }
        v
    }

    /// How many problems so far (to tell whether a part added any).
    pub(crate) fn count(&self) -> usize {
        self.problems.len()
    }

    /// The problems, in file order, and the positions index.
    pub(crate) fn finish(self, origin: &str) -> (Problems, Locations) {
        (Problems::new(origin, self.problems), self.locations)
    }
}
