//! RFC 6902 JSON Patch: `add`, `remove`, `replace`, `move`, `copy` and `test`, applied to a copy
//! so that a patch that fails part-way changes nothing.

use serde_json::Value;

/// Applies `patch` (an array of operations) to `doc`.
pub fn apply(doc: &Value, patch: &Value) -> Result<Value, String> {
    let ops = patch.as_array().ok_or("a JSON Patch is an array of operations")?;
    let mut out = doc.clone();
    for (i, op) in ops.iter().enumerate() {
        apply_op(&mut out, op).map_err(|e| format!("operation {i}: {e}"))?;
    }
    Ok(out)
}

fn field<'a>(op: &'a Value, name: &str) -> Result<&'a str, String> {
    op.get(name).and_then(Value::as_str).ok_or_else(|| format!("missing \"{name}\""))
}

fn apply_op(doc: &mut Value, op: &Value) -> Result<(), String> {
    let path = field(op, "path")?;
    let value = || op.get("value").cloned().ok_or_else(|| "missing \"value\"".to_owned());
    match field(op, "op")? {
        "add" => add(doc, path, value()?),
        "remove" => remove(doc, path).map(drop),
        "replace" => {
            let target = doc.pointer_mut(path).ok_or_else(|| format!("{path} does not exist"))?;
            *target = value()?;
            Ok(())
        }
        "move" => {
            let from = field(op, "from")?;
            if path.starts_with(&format!("{from}/")) {
                return Err("cannot move a value into itself".into());
            }
            let v = remove(doc, from)?;
            add(doc, path, v)
        }
        "copy" => {
            let from = field(op, "from")?;
            let v = doc.pointer(from).cloned().ok_or_else(|| format!("{from} does not exist"))?;
            add(doc, path, v)
        }
        "test" => match doc.pointer(path) {
            Some(v) if *v == value()? => Ok(()),
            _ => Err(format!("test failed at {path}")),
        },
        other => Err(format!("unknown op {other:?}")),
    }
}

/// Splits a pointer into its parent and its unescaped last token.
fn split(path: &str) -> Result<(&str, String), String> {
    let i = path.rfind('/').ok_or_else(|| format!("{path:?} is not a JSON pointer"))?;
    Ok((&path[..i], path[i + 1..].replace("~1", "/").replace("~0", "~")))
}

fn add(doc: &mut Value, path: &str, v: Value) -> Result<(), String> {
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
            let i = if key == "-" {
                a.len()
            } else {
                key.parse().map_err(|_| format!("bad index {key:?}"))?
            };
            if i > a.len() {
                return Err(format!("index {i} is past the end"));
            }
            a.insert(i, v);
            Ok(())
        }
        _ => Err(format!("{parent} is not an object or array")),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, key) = split(path)?;
    match doc.pointer_mut(parent) {
        Some(Value::Object(m)) => m.remove(&key).ok_or_else(|| format!("{path} does not exist")),
        Some(Value::Array(a)) => {
            let i: usize = key.parse().map_err(|_| format!("bad index {key:?}"))?;
            (i < a.len()).then(|| a.remove(i)).ok_or_else(|| format!("{path} does not exist"))
        }
        _ => Err(format!("{parent} is not an object or array")),
    }
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
    fn a_failing_patch_changes_nothing() {
        let doc = json!({"a": 1});
        let e = apply(
            &doc,
            &json!([{"op": "replace", "path": "/a", "value": 2}, {"op": "remove", "path": "/nope"}]),
        );
        assert!(e.unwrap_err().contains("operation 1"));
        assert!(apply(&doc, &json!([{"op": "test", "path": "/a", "value": 9}])).is_err());
        assert!(apply(&doc, &json!({"op": "add"})).is_err());
    }
}
