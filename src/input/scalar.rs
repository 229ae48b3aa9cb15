//! [`Scalar`]: any YAML scalar kept as its text, so the checker (not serde) says what is
//! wrong with a value, and every such problem is reported at once.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Any YAML scalar (string, number, bool) kept as its text.
///
/// `drain: 30` and `drain: "30s"` both arrive here; the checker then says what is wrong
/// with `30` (no unit) instead of serde's "expected a string". Written back, a scalar keeps
/// its YAML type (`51` stays a number, `true` a boolean, `"51"` a string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar(pub String, Kind);

/// The YAML type a [`Scalar`] was read as, so that it is written back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Bool,
    Integer,
    Float,
}

impl Default for Scalar {
    /// Empty text.
    fn default() -> Self {
        Scalar(String::new(), Kind::Text)
    }
}

impl Scalar {
    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Scalar {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Scalar {
    fn from(s: &str) -> Self {
        Scalar(s.to_owned(), Kind::Text)
    }
}

impl From<String> for Scalar {
    fn from(s: String) -> Self {
        Scalar(s, Kind::Text)
    }
}

impl From<bool> for Scalar {
    fn from(b: bool) -> Self {
        Scalar(b.to_string(), Kind::Bool)
    }
}

macro_rules! integer_scalar {
    ($($t:ty),*) => {$(
        impl From<$t> for Scalar {
            fn from(n: $t) -> Self {
                Scalar(n.to_string(), Kind::Integer)
            }
        }
    )*};
}
integer_scalar!(u8, u16, u32, u64, usize);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;

        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a single value (string, number or boolean)")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned(), Kind::Text))
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string(), Kind::Bool))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string(), Kind::Integer))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string(), Kind::Integer))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string(), Kind::Float))
            }
        }

        deserializer.deserialize_any(ScalarVisitor)
    }
}

impl Serialize for Scalar {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.0.as_str();
        match self.1 {
            Kind::Bool => match text.parse::<bool>() {
                Ok(b) => serializer.serialize_bool(b),
                Err(_) => serializer.serialize_str(text),
            },
            Kind::Integer => match (text.parse::<u64>(), text.parse::<i64>()) {
                (Ok(n), _) => serializer.serialize_u64(n),
                (_, Ok(n)) => serializer.serialize_i64(n),
                _ => serializer.serialize_str(text),
            },
            Kind::Float => match text.parse::<f64>() {
                Ok(x) => serializer.serialize_f64(x),
                Err(_) => serializer.serialize_str(text),
            },
            Kind::Text => serializer.serialize_str(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_keep_their_yaml_type_when_written_back() {
        let src = "[51, true, \"51\", 1.5, 3s, -2]\n";
        let list: Vec<Scalar> = serde_yaml::from_str(src).unwrap();
        let texts: Vec<&str> = list.iter().map(Scalar::as_str).collect();
        assert_eq!(texts, ["51", "true", "51", "1.5", "3s", "-2"]);
        let back = serde_yaml::to_string(&list).unwrap();
        assert_eq!(back, "- 51\n- true\n- '51'\n- 1.5\n- 3s\n- -2\n");
        let again: Vec<Scalar> = serde_yaml::from_str(&back).unwrap();
        assert_eq!(again, list);
    }
}
