//! The message catalog. Every user-facing string of the pages comes from here, so a
//! language is added by adding a file to `messages/`, not by touching templates.

use axum::http::HeaderMap;
use std::collections::HashMap;
use std::sync::OnceLock;

type Catalog = HashMap<String, String>;

const SOURCES: &[(&str, &str)] = &[
    ("en", include_str!("../messages/en.toml")),
    ("es", include_str!("../messages/es.toml")),
];

fn catalogs() -> &'static HashMap<&'static str, Catalog> {
    static C: OnceLock<HashMap<&'static str, Catalog>> = OnceLock::new();
    C.get_or_init(|| {
        SOURCES
            .iter()
            .map(|(lang, src)| {
                // The catalogs are compiled in and checked by tests; a broken one yields
                // keys instead of text rather than a crash.
                let table: HashMap<String, String> = toml::from_str(src).unwrap_or_default();
                (*lang, table)
            })
            .collect()
    })
}

/// What `Tr::s` answers for a key no catalog has.
pub const MISSING: &str = "(missing text)";

/// The languages offered, as (code, name in that language).
pub const LANGUAGES: &[(&str, &str)] = &[("en", "English"), ("es", "Español")];

/// Translations for one request.
#[derive(Debug, Clone, Copy)]
pub struct Tr {
    pub lang: &'static str,
}

impl Tr {
    pub fn new(lang: &str) -> Tr {
        Tr {
            lang: LANGUAGES
                .iter()
                .find(|(c, _)| *c == lang)
                .map(|(c, _)| *c)
                .unwrap_or("en"),
        }
    }

    /// The text for `key`, falling back to English, then to the key itself.
    pub fn s(&self, key: &str) -> &'static str {
        let cats = catalogs();
        cats.get(self.lang)
            .and_then(|c| c.get(key))
            .or_else(|| cats.get("en").and_then(|c| c.get(key)))
            .map(String::as_str)
            .unwrap_or(MISSING)
    }

    /// The text for `key` with `{name}` placeholders filled.
    pub fn f(&self, key: &str, args: &[(&str, &str)]) -> String {
        args.iter().fold(self.s(key).to_owned(), |acc, (k, v)| {
            acc.replace(&format!("{{{k}}}"), v)
        })
    }

    /// A bill line as the reader reads it: the city's billing system describes lines in
    /// English; a line of a known kind (`water`, `sewer`, ...) is named from the catalog
    /// (`bill.line.<kind>`) in other languages, keeping any detail after a colon ("12 HCF").
    pub fn bill_line(&self, kind: &str, description: &str) -> String {
        if self.lang == "en" {
            return description.to_owned();
        }
        let key = format!("bill.line.{kind}");
        let cats = catalogs();
        match cats.get(self.lang).and_then(|c| c.get(&key)) {
            Some(name) => match description.split_once(':') {
                Some((_, detail)) if !detail.trim().is_empty() => {
                    format!("{name}: {}", detail.trim())
                }
                _ => name.clone(),
            },
            None => description.to_owned(),
        }
    }

    /// A calendar date (`YYYY-MM-DD`, as stored) the way people write it in this language:
    /// "December 4, 2026", "4 de diciembre de 2026". Anything else is shown as it is.
    pub fn date(&self, iso: &str) -> String {
        let mut parts = iso.get(..10).unwrap_or(iso).splitn(3, '-');
        let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
            return iso.to_owned();
        };
        let (Ok(m), Ok(d)) = (m.parse::<u8>(), d.parse::<u8>()) else {
            return iso.to_owned();
        };
        if !(1..=12).contains(&m) || y.len() != 4 {
            return iso.to_owned();
        }
        let month = self.s(&format!("date.month.{m}"));
        self.f(
            "date.format",
            &[("year", y), ("month", month), ("day", &d.to_string())],
        )
    }

    /// The other language, for the switcher.
    pub fn other(&self) -> (&'static str, &'static str) {
        if self.lang == "es" {
            LANGUAGES[0]
        } else {
            LANGUAGES[1]
        }
    }
}

/// Picks the language: `?lang=` then the `lang` cookie, then `Accept-Language`.
pub fn negotiate(query_lang: Option<&str>, headers: &HeaderMap) -> Tr {
    if let Some(l) = query_lang {
        return Tr::new(l);
    }
    if let Some(l) = crate::cookies::get(headers, "lang") {
        return Tr::new(&l);
    }
    let accept = headers
        .get(axum::http::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let first = accept
        .split(',')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    Tr::new(if first.starts_with("es") { "es" } else { "en" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_used_in_templates() -> Vec<String> {
        let mut keys = Vec::new();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut stack = vec![dir.join("templates"), dir.join("src")];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                for marker in ["t.s(\"", "t.f(\""] {
                    for part in text.split(marker).skip(1) {
                        if let Some(end) = part.find('"') {
                            keys.push(part[..end].to_owned());
                        }
                    }
                }
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }

    #[test]
    fn catalogs_parse_and_cover_every_key() {
        let cats = catalogs();
        for (lang, src) in SOURCES {
            assert!(
                toml::from_str::<HashMap<String, String>>(src).is_ok(),
                "{lang}.toml does not parse"
            );
        }
        let en = &cats["en"];
        let used = keys_used_in_templates();
        assert!(used.len() > 20, "found only {} keys", used.len());
        let missing: Vec<_> = used
            .iter()
            .filter(|k| !en.contains_key(k.as_str()))
            .collect();
        assert!(missing.is_empty(), "keys missing from en.toml: {missing:?}");
    }

    /// Every refusal a person can meet has a text in both languages: each stable code a
    /// use case or a page gives a field problem (the second argument of each field problem in
    /// the app and web sources), and each status, fee, department and purpose shown by code.
    #[test]
    fn every_refusal_code_and_status_has_english_and_spanish() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut keys = Vec::new();
        let mut stack = vec![dir.join("src"), dir.join("../app/src")];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                for part in text.split("FieldProblem::new(").skip(1) {
                    // The second argument is the code: the first string literal after the
                    // first comma outside parentheses.
                    let mut depth = 0;
                    let rest = part.char_indices().find_map(|(i, c)| match c {
                        '(' => {
                            depth += 1;
                            None
                        }
                        ')' if depth > 0 => {
                            depth -= 1;
                            None
                        }
                        ',' if depth == 0 => Some(&part[i + 1..]),
                        _ => None,
                    });
                    let code = rest
                        .map(str::trim_start)
                        .and_then(|r| r.strip_prefix('"'))
                        .and_then(|r| r.split('"').next());
                    if let Some(code) = code {
                        keys.push(format!("field_error.{code}"));
                    }
                }
            }
        }
        assert!(
            keys.len() > 40,
            "found only {} field problem codes",
            keys.len()
        );
        let sets: &[(&str, &[&str])] = &[
            (
                "permit.status",
                &[
                    "draft",
                    "submitted",
                    "revision_requested",
                    "rejected",
                    "approved",
                    "issued",
                ],
            ),
            (
                "licence.status",
                &["pending", "active", "expired", "suspended", "revoked"],
            ),
            (
                "inspection.status",
                &["requested", "passed", "failed", "partial", "canceled"],
            ),
            ("invoice.status", &["open", "paid", "void"]),
            (
                "invoice.purpose",
                &[
                    "permit_fees",
                    "reinspection",
                    "licence_new",
                    "licence_renewal",
                ],
            ),
            ("department", &["utility", "permit", "licence", "card_fee"]),
            (
                "fee",
                &[
                    "permit_fee",
                    "plan_review",
                    "reinspection",
                    "licence_fee",
                    "late_penalty",
                    "card_fee",
                ],
            ),
        ];
        for (prefix, values) in sets {
            keys.extend(values.iter().map(|v| format!("{prefix}.{v}")));
        }
        let cats = catalogs();
        for lang in ["en", "es"] {
            let missing: Vec<_> = keys
                .iter()
                .filter(|k| !cats[lang].contains_key(k.as_str()))
                .collect();
            assert!(
                missing.is_empty(),
                "keys missing from {lang}.toml: {missing:?}"
            );
        }
    }

    #[test]
    fn bill_lines_in_spanish() {
        let es = Tr::new("es");
        assert_eq!(
            es.bill_line("water", "Water service: 12 HCF"),
            "Servicio de agua: 12 HCF"
        );
        assert_eq!(es.bill_line("sewer", "Sewer service"), "Alcantarillado");
        assert_eq!(es.bill_line("odd", "Something else"), "Something else");
        assert_eq!(
            Tr::new("en").bill_line("water", "Water service: 12 HCF"),
            "Water service: 12 HCF"
        );
    }

    #[test]
    fn dates_read_as_people_write_them() {
        assert_eq!(Tr::new("en").date("2026-12-04"), "December 4, 2026");
        assert_eq!(Tr::new("es").date("2026-12-04"), "4 de diciembre de 2026");
        assert_eq!(Tr::new("en").date("not a date"), "not a date");
        assert_eq!(Tr::new("en").date("2026-13-01"), "2026-13-01");
    }

    #[test]
    fn spanish_covers_english() {
        let cats = catalogs();
        let missing: Vec<_> = cats["en"]
            .keys()
            .filter(|k| !cats["es"].contains_key(k.as_str()))
            .collect();
        assert!(missing.is_empty(), "keys missing from es.toml: {missing:?}");
    }
}
