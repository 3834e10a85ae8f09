//! RFC 6902 JSON Patch: `add`, `remove`, `replace`, `move`, `copy` and `test`, applied to a copy
//! so that a patch that fails part-way changes nothing. A posted patch's shape is checked when
//! the proposal is stored ([`check_shape`]); whether it applies is found at approval ([`apply`]).

use std::fmt;

use serde_json::Value;

/// The operations RFC 6902 defines.
const OPS: [&str; 6] = ["add", "remove", "replace", "move", "copy", "test"];

/// Why a patch does not apply.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatchError {
    /// The patch is not an array of operations.
    NotAnArray,
    /// Operation `index` (from 0) failed.
    Op { index: usize, error: OpError },
}

/// Why one operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpError {
    /// A field the operation needs is absent (or, for `op`, `path` and `from`, not a string).
    Missing(&'static str),
    UnknownOp(String),
    /// `path` or `from` is not a JSON pointer.
    NotAPointer(String),
    /// The pointer names nothing.
    NotFound(String),
    /// The pointer's parent is neither an object nor an array.
    NotAContainer(String),
    /// An array index that is not a number, or past the end.
    BadIndex(String),
    /// `move` into its own child.
    MoveIntoItself,
    /// A `test` operation found another value (or none).
    TestFailed(String),
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpError::Missing(name) => write!(f, "missing \"{name}\""),
            OpError::UnknownOp(op) => write!(f, "unknown op {op:?}"),
            OpError::NotAPointer(p) => write!(f, "{p:?} is not a JSON pointer"),
            OpError::NotFound(p) => write!(f, "{p} does not exist"),
            OpError::NotAContainer(p) => write!(f, "{p} is not an object or array"),
            OpError::BadIndex(i) => write!(f, "bad index {i:?}"),
            OpError::MoveIntoItself => f.write_str("cannot move a value into itself"),
            OpError::TestFailed(p) => write!(f, "test failed at {p}"),
        }
    }
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatchError::NotAnArray => f.write_str("a JSON Patch is an array of operations"),
            PatchError::Op { index, error } => write!(f, "operation {index}: {error}"),
        }
    }
}

impl std::error::Error for PatchError {}

/// Checks that a patch is RFC 6902 operations as the OpenAPI document's `JsonPatch` describes
/// them (an array; each with a known `op`, a `path` string and, if any, a `from` string), so
/// that nothing else is stored and shown back.
pub fn check_shape(patch: &Value) -> Result<(), PatchError> {
    let ops = patch.as_array().ok_or(PatchError::NotAnArray)?;
    for (index, op) in ops.iter().enumerate() {
        let text = |name: &str| op.get(name).map(|v| v.as_str().ok_or(()));
        let error = match (text("op"), text("path"), text("from")) {
            (Some(Ok(o)), Some(Ok(_)), None | Some(Ok(_))) if OPS.contains(&o) => continue,
            (Some(Ok(o)), Some(Ok(_)), None | Some(Ok(_))) => OpError::UnknownOp(o.to_owned()),
            (Some(Ok(_)), Some(Ok(_)), _) => OpError::Missing("from"),
            (Some(Ok(_)), _, _) => OpError::Missing("path"),
            _ => OpError::Missing("op"),
        };
        return Err(PatchError::Op { index, error });
    }
    Ok(())
}

/// Applies `patch` (an array of operations) to a copy of `doc`.
pub fn apply(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops = patch.as_array().ok_or(PatchError::NotAnArray)?;
    let mut out = doc.clone();
    for (index, op) in ops.iter().enumerate() {
        apply_op(&mut out, op).map_err(|error| PatchError::Op { index, error })?;
    }
    Ok(out)
}

fn field<'a>(op: &'a Value, name: &'static str) -> Result<&'a str, OpError> {
    op.get(name).and_then(Value::as_str).ok_or(OpError::Missing(name))
}

fn apply_op(doc: &mut Value, op: &Value) -> Result<(), OpError> {
    let path = field(op, "path")?;
    let value = || op.get("value").cloned().ok_or(OpError::Missing("value"));
    match field(op, "op")? {
        "add" => add(doc, path, value()?),
        "remove" => remove(doc, path).map(drop),
        "replace" => {
            let target = doc.pointer_mut(path).ok_or_else(|| OpError::NotFound(path.into()))?;
            *target = value()?;
            Ok(())
        }
        "move" => {
            let from = field(op, "from")?;
            if path.starts_with(&format!("{from}/")) {
                return Err(OpError::MoveIntoItself);
            }
            let v = remove(doc, from)?;
            add(doc, path, v)
        }
        "copy" => {
            let from = field(op, "from")?;
            let v = doc.pointer(from).cloned().ok_or_else(|| OpError::NotFound(from.into()))?;
            add(doc, path, v)
        }
        "test" => match doc.pointer(path) {
            Some(v) if *v == value()? => Ok(()),
            _ => Err(OpError::TestFailed(path.into())),
        },
        other => Err(OpError::UnknownOp(other.into())),
    }
}

/// Splits a pointer into its parent and its unescaped last token.
fn split(path: &str) -> Result<(&str, String), OpError> {
    let i = path.rfind('/').ok_or_else(|| OpError::NotAPointer(path.into()))?;
    Ok((&path[..i], path[i + 1..].replace("~1", "/").replace("~0", "~")))
}

fn add(doc: &mut Value, path: &str, v: Value) -> Result<(), OpError> {
    if path.is_empty() {
        *doc = v;
        return Ok(());
    }
    let (parent, key) = split(path)?;
    match doc.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.insert(key, v);
            Ok(())
        }
        Some(Value::Array(a)) => {
            let i = if key == "-" { a.len() } else { index(&key)? };
            if i > a.len() {
                return Err(OpError::BadIndex(key));
            }
            a.insert(i, v);
            Ok(())
        }
        _ => Err(OpError::NotAContainer(parent.into())),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, OpError> {
    let (parent, key) = split(path)?;
    let gone = || OpError::NotFound(path.into());
    match doc.pointer_mut(parent) {
        Some(Value::Object(m)) => m.remove(&key).ok_or_else(gone),
        Some(Value::Array(a)) => {
            let i = index(&key)?;
            (i < a.len()).then(|| a.remove(i)).ok_or_else(gone)
        }
        _ => Err(OpError::NotAContainer(parent.into())),
    }
}

fn index(key: &str) -> Result<usize, OpError> {
    key.parse().map_err(|_| OpError::BadIndex(key.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operations_follow_rfc_6902() {
        let doc = json!({"a": {"b": 1}, "list": [1, 2], "x~y": 0});
        let patch = json!([
            {"op": "replace", "path": "/a/b", "value": 2},
            {"op": "add", "path": "/list/-", "value": 3},
            {"op": "add", "path": "/list/0", "value": 0},
            {"op": "move", "from": "/a", "path": "/moved"},
            {"op": "copy", "from": "/moved/b", "path": "/copy"},
            {"op": "remove", "path": "/x~0y"},
            {"op": "test", "path": "/copy", "value": 2},
        ]);
        assert_eq!(
            apply(&doc, &patch).unwrap(),
            json!({"moved": {"b": 2}, "list": [0, 1, 2, 3], "copy": 2})
        );
    }

    #[test]
    fn a_failing_patch_changes_nothing_and_names_the_operation() {
        let doc = json!({"a": 1});
        let e = apply(
            &doc,
            &json!([{"op": "replace", "path": "/a", "value": 2}, {"op": "remove", "path": "/nope"}]),
        )
        .unwrap_err();
        assert_eq!(e, PatchError::Op { index: 1, error: OpError::NotFound("/nope".into()) });
        assert_eq!(e.to_string(), "operation 1: /nope does not exist");
        let test = apply(&doc, &json!([{"op": "test", "path": "/a", "value": 9}]));
        assert!(matches!(test, Err(PatchError::Op { error: OpError::TestFailed(_), .. })));
        assert_eq!(apply(&doc, &json!({"op": "add"})), Err(PatchError::NotAnArray));
        let past = apply(&json!([1]), &json!([{"op": "add", "path": "/5", "value": 0}]));
        assert!(matches!(past, Err(PatchError::Op { error: OpError::BadIndex(_), .. })));
    }

    #[test]
    fn a_posted_patch_must_have_the_documented_shape() {
        assert_eq!(check_shape(&json!([{"op": "move", "from": "/a", "path": "/b"}])), Ok(()));
        assert_eq!(check_shape(&json!({})), Err(PatchError::NotAnArray));
        let unknown = check_shape(&json!([{"op": "add", "path": "/a"}, {"op": "x", "path": "/"}]));
        assert_eq!(
            unknown,
            Err(PatchError::Op { index: 1, error: OpError::UnknownOp("x".into()) })
        );
        let no_path = check_shape(&json!([{"op": "add"}])).unwrap_err();
        assert_eq!(no_path.to_string(), "operation 0: missing \"path\"");
    }
}
