//! Stripe-style form parameters and error objects for the sandbox API.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A Stripe error object, rendered as `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) kind: &'static str,
    pub(crate) code: Option<&'static str>,
    pub(crate) message: String,
    pub(crate) param: Option<String>,
}

impl ApiError {
    pub(crate) fn invalid(
        param: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: Some(code),
            message: message.into(),
            param: Some(param.into()),
        }
    }

    pub(crate) fn request(
        status: StatusCode,
        code: Option<&'static str>,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            kind: "invalid_request_error",
            code,
            message: message.into(),
            param: None,
        }
    }

    pub(crate) fn missing(param: &str) -> Self {
        ApiError::invalid(
            param,
            "parameter_missing",
            format!("Missing required param: {param}."),
        )
    }

    pub(crate) fn not_found(object: &str, id: &str, param: Option<&str>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            code: Some("resource_missing"),
            message: format!("No such {object}: '{}'", truncate(id, 100)),
            param: param.map(str::to_owned),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut err = serde_json::Map::new();
        err.insert("type".into(), json!(self.kind));
        if let Some(code) = self.code {
            err.insert("code".into(), json!(code));
        }
        err.insert("message".into(), json!(self.message));
        if let Some(param) = self.param {
            err.insert("param".into(), json!(param));
        }
        (self.status, axum::Json(json!({ "error": err }))).into_response()
    }
}

/// Shortens attacker-controlled text before it is echoed in an error message.
pub(crate) fn truncate(s: &str, max_chars: usize) -> String {
    let mut out: String = s
        .chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect();
    if s.chars().count() > max_chars {
        out.push('…');
    }
    out
}

/// Decoded `application/x-www-form-urlencoded` parameters; each one must be
/// consumed, so unknown parameters are reported like Stripe does.
pub(crate) struct Params {
    entries: Vec<(String, String)>,
    used: Vec<bool>,
}

impl Params {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let entries: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|_| {
            ApiError::request(
                StatusCode::BAD_REQUEST,
                None,
                "Invalid request: the body is not valid application/x-www-form-urlencoded.",
            )
        })?;
        if entries.len() > 1000 {
            return Err(ApiError::request(
                StatusCode::BAD_REQUEST,
                None,
                "Invalid request: too many parameters.",
            ));
        }
        let used = vec![false; entries.len()];
        Ok(Params { entries, used })
    }

    /// One scalar parameter; given twice is an error.
    pub(crate) fn take(&mut self, key: &str) -> Result<Option<String>, ApiError> {
        let mut found = None;
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if k == key {
                if found.is_some() {
                    return Err(ApiError::invalid(
                        key,
                        "parameter_invalid_string",
                        format!("Received duplicate parameter: {}", truncate(key, 100)),
                    ));
                }
                found = Some(v.clone());
                self.used[i] = true;
            }
        }
        Ok(found)
    }

    pub(crate) fn take_required(&mut self, key: &str) -> Result<String, ApiError> {
        match self.take(key)? {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ApiError::missing(key)),
        }
    }

    /// An array parameter, given as `key[]=a&key[]=b` or `key[0]=a&key[1]=b`.
    pub(crate) fn take_list(&mut self, key: &str) -> Vec<String> {
        let prefix = format!("{key}[");
        let mut out = Vec::new();
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if let Some(rest) = k.strip_prefix(&prefix) {
                if let Some(idx) = rest.strip_suffix(']') {
                    if idx.is_empty() || idx.bytes().all(|b| b.is_ascii_digit()) {
                        self.used[i] = true;
                        out.push(v.clone());
                    }
                }
            }
        }
        out
    }

    /// A hash parameter `key[name]=value` (e.g. metadata), in the given order.
    pub(crate) fn take_hash(&mut self, key: &str) -> Vec<(String, String)> {
        let prefix = format!("{key}[");
        let mut out = Vec::new();
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if let Some(rest) = k.strip_prefix(&prefix) {
                if let Some(name) = rest.strip_suffix(']') {
                    if !name.contains('[') && !name.contains(']') {
                        self.used[i] = true;
                        out.push((name.to_owned(), v.clone()));
                    }
                }
            }
        }
        out
    }

    pub(crate) fn has_prefix(&self, prefix: &str) -> bool {
        self.entries.iter().any(|(k, _)| k.starts_with(prefix))
    }

    /// Fails on the first parameter nothing consumed.
    pub(crate) fn finish(self) -> Result<(), ApiError> {
        match self
            .entries
            .iter()
            .zip(&self.used)
            .find(|(_, used)| !**used)
        {
            Some(((k, _), _)) => Err(ApiError::invalid(
                truncate(k, 100),
                "parameter_unknown",
                format!("Received unknown parameter: {}", truncate(k, 100)),
            )),
            None => Ok(()),
        }
    }
}

/// Stripe's integer parsing: optional minus, ASCII digits only.
pub(crate) fn parse_int(param: &str, value: &str) -> Result<i64, ApiError> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid(
            param,
            "parameter_invalid_integer",
            format!("Invalid integer: {}", truncate(value, 40)),
        ));
    }
    value.parse::<i64>().map_err(|_| {
        ApiError::invalid(
            param,
            "parameter_invalid_integer",
            format!("Invalid integer: {}", truncate(value, 40)),
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn params() {
        let mut p =
            Params::parse(b"a=1&expand[]=x&expand[1]=y&metadata[k]=v&metadata[j]=w&z=9").unwrap();
        assert_eq!(p.take("a").unwrap().as_deref(), Some("1"));
        assert_eq!(p.take_list("expand"), vec!["x", "y"]);
        assert_eq!(
            p.take_hash("metadata"),
            vec![("k".into(), "v".into()), ("j".into(), "w".into())]
        );
        let e = p.finish().unwrap_err();
        assert_eq!(e.param.as_deref(), Some("z"));
        assert_eq!(e.code, Some("parameter_unknown"));

        let mut p = Params::parse(b"a=1&a=2").unwrap();
        assert!(p.take("a").is_err());
        // Hostile bodies must not panic, whatever they decode to.
        for body in [&b"%zz=1"[..], &[0xff, 0xfe, b'=', 0xff], b"&&&==&", b"a"] {
            let _ = Params::parse(body);
        }
    }

    #[test]
    fn ints() {
        assert_eq!(parse_int("a", "12").unwrap(), 12);
        assert_eq!(parse_int("a", "-3").unwrap(), -3);
        for bad in [
            "",
            "-",
            "1.5",
            "1e3",
            " 1",
            "+1",
            "99999999999999999999",
            "１",
        ] {
            assert!(parse_int("a", bad).is_err(), "{bad}");
        }
    }
}
