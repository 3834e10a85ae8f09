//! `Strict`: a serde `Deserializer` adapter that reads request JSON the way `/v1/openapi.json`
//! describes it, and words its errors for API clients instead of Rust programmers.
//!
//! serde's derives accept a JSON array for a struct (fields by position: `[5000]` would set the
//! first field) and refuse `313.0` for an integer, while the document's JSON Schema says the
//! opposite: an object is an object, and an integer is any number with no fractional part. The
//! adapter wraps every nested deserializer, so both hold at any depth, and it names the expected
//! JSON type ("an object", "an integer from 0 to 4294967295") where the derives would name a Rust
//! type (`struct QueuePatch`, `u32`).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, Expected, Unexpected, Visitor};

/// What an adapted visitor says it expected, when the derive's own words would be Rust's.
#[derive(Clone, Copy)]
enum Want {
    /// The inner visitor's own words.
    Inner,
    Object,
    Integer {
        min: i64,
        max: u64,
    },
    Number,
    OneOf(&'static [&'static str]),
}

/// A deserializer whose nested deserializers are all `Strict` too.
pub struct Strict<D>(pub D);

/// A visitor that hands on `Strict` deserializers, maps and sequences.
struct Visit<V> {
    inner: V,
    want: Want,
}

impl<V> Visit<V> {
    fn new(inner: V, want: Want) -> Visit<V> {
        Visit { inner, want }
    }
}

macro_rules! forward {
    ($($method:ident $(($($arg:ident: $ty:ty),*))?;)*) => {
        $(fn $method<V: Visitor<'de>>(self, $($($arg: $ty,)*)? v: V) -> Result<V::Value, D::Error> {
            self.0.$method($($($arg,)*)? Visit::new(v, Want::Inner))
        })*
    };
}

macro_rules! integer {
    ($($method:ident: $t:ty;)*) => {
        $(fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
            let want = Want::Integer { min: <$t>::MIN as i64, max: <$t>::MAX as u64 };
            self.0.$method(Visit::new(v, want))
        })*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<D> {
    type Error = D::Error;

    forward! {
        deserialize_any; deserialize_bool; deserialize_char; deserialize_str; deserialize_string;
        deserialize_bytes; deserialize_byte_buf; deserialize_option; deserialize_unit;
        deserialize_seq; deserialize_map; deserialize_identifier; deserialize_ignored_any;
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
    }

    integer! {
        deserialize_u8: u8; deserialize_u16: u16; deserialize_u32: u32; deserialize_u64: u64;
        deserialize_i8: i8; deserialize_i16: i16; deserialize_i32: i32; deserialize_i64: i64;
    }

    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_f32(Visit::new(v, Want::Number))
    }

    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_f64(Visit::new(v, Want::Number))
    }

    /// A struct is read from an object only, never from an array.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(Visit::new(v, Want::Object))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, Visit::new(v, Want::OneOf(variants)))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

impl<V> Visit<V> {
    /// Our words for what was expected; `None` where the inner visitor's are fine.
    fn words(&self, f: &mut fmt::Formatter<'_>) -> Option<fmt::Result> {
        let r = match self.want {
            Want::Inner => return None,
            Want::Object => f.write_str("a JSON object"),
            Want::Integer { min: 0, max } => write!(f, "an integer from 0 to {max}"),
            Want::Integer { min, max } => write!(f, "an integer from {min} to {max}"),
            Want::Number => f.write_str("a number"),
            Want::OneOf(names) => names.iter().enumerate().try_for_each(|(i, n)| {
                write!(f, "{}\"{n}\"", if i == 0 { "one of " } else { ", " })
            }),
        };
        Some(r)
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Visit<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.words(f).unwrap_or_else(|| self.inner.expecting(f))
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<V::Value, E> {
        self.inner.visit_bool(b)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<V::Value, E> {
        self.check_expected(n as i128, Unexpected::Signed(n))?;
        self.inner.visit_i64(n)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<V::Value, E> {
        self.check_expected(n as i128, Unexpected::Unsigned(n))?;
        self.inner.visit_u64(n)
    }

    /// JSON Schema's integer is any number with no fractional part: `313.0` is 313.
    fn visit_f64<E: de::Error>(self, x: f64) -> Result<V::Value, E> {
        let Want::Integer { .. } = self.want else { return self.inner.visit_f64(x) };
        let whole = x.is_finite() && x.fract() == 0.0 && x.abs() < 2f64.powi(64);
        if !whole {
            return Err(E::invalid_type(Unexpected::Float(x), &self.expected()));
        }
        self.check_expected(x as i128, Unexpected::Float(x))?;
        if x < 0.0 {
            self.inner.visit_i64(x as i64)
        } else {
            self.inner.visit_u64(x as u64)
        }
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<V::Value, E> {
        self.inner.visit_str(s)
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<V::Value, E> {
        self.inner.visit_borrowed_str(s)
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<V::Value, E> {
        self.inner.visit_string(s)
    }

    fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<V::Value, E> {
        self.inner.visit_bytes(b)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<V::Value, D2::Error> {
        self.inner.visit_some(Strict(d))
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_newtype_struct<D2: Deserializer<'de>>(self, d: D2) -> Result<V::Value, D2::Error> {
        self.inner.visit_newtype_struct(Strict(d))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(Seq(seq))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Map(map))
    }

    /// Enum variants pass through unadapted: the API's enums are plain strings.
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(data)
    }
}

/// `Visit`'s words as an `Expected`, without needing the inner visitor's `'de`.
struct Words(String);

impl Expected for Words {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de, V: Visitor<'de>> Visit<V> {
    fn expected(&self) -> Words {
        struct Show<'a, V>(&'a Visit<V>);
        impl<'de, V: Visitor<'de>> fmt::Display for Show<'_, V> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                Visitor::expecting(self.0, f)
            }
        }
        Words(Show(self).to_string())
    }

    fn check_expected<E: de::Error>(&self, n: i128, unexpected: Unexpected<'_>) -> Result<(), E> {
        match self.want {
            Want::Integer { min, max } if n < min as i128 || n > max as i128 => {
                Err(E::invalid_value(unexpected, &self.expected()))
            }
            _ => Ok(()),
        }
    }
}

struct Seed<T>(T);

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<T> {
    type Value = T::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T::Value, D::Error> {
        self.0.deserialize(Strict(d))
    }
}

struct Seq<A>(A);

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Seq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

struct Map<A>(A);

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Map<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(Seed(seed))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}
