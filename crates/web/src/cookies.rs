//! Reading and writing our few cookies (no crate needed for this much).

use axum::http::HeaderMap;

/// The value of cookie `name` in the request, if present once.
pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A `Set-Cookie` value. `secure` adds `Secure`; callers pick `__Host-` names with it.
pub fn set(name: &str, value: &str, same_site: &str, secure: bool, max_age: Option<i64>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

pub fn clear(name: &str, same_site: &str, secure: bool) -> String {
    set(name, "", same_site, secure, Some(0))
}

/// The prefixed name of a cookie when TLS is on (`secure`), else its plain name.
pub fn pick(secure: bool, prefixed: &'static str, plain: &'static str) -> &'static str {
    if secure {
        prefixed
    } else {
        plain
    }
}
