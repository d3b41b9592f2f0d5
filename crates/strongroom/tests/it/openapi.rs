//! The OpenAPI document describes exactly the API the router serves, and states every
//! constraint the server enforces, so a client generated from it never sends a request
//! the document allows and the server refuses.

use crate::harness::*;

fn api_routes() -> Vec<String> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/src/api.rs"),
    )
    .unwrap();
    let mut out: Vec<String> = text
        .split(".route(")
        .skip(1)
        .filter_map(|p| {
            p.trim_start()
                .strip_prefix('"')?
                .split('"')
                .next()
                .map(str::to_owned)
        })
        .filter(|r| r.starts_with("/api/v1/") && r != "/api/v1/openapi.json")
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn the_document_matches_the_router_and_states_the_servers_constraints() {
    let s = server().start().await;
    let doc: serde_json::Value = s
        .http
        .get(format!("{}/api/v1/openapi.json", s.portal))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut documented: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    documented.sort();
    assert_eq!(
        documented,
        api_routes(),
        "every API route is documented, and nothing else"
    );

    let schemas = &doc["components"]["schemas"];
    let create = &schemas["CreatePaymentRequest"];
    assert_eq!(
        create["properties"]["items"]["minItems"], 1,
        "an empty items list is invalid by the document"
    );
    assert_eq!(create["properties"]["items"]["maxItems"], 20);
    let item = &schemas["ItemJson"]["properties"];
    assert_eq!(
        item["account_number"]["pattern"], "^[0-9]{4,12}$",
        "an empty account number is invalid by the document"
    );
    assert_eq!(item["amount_cents"]["minimum"], 1);
    assert_eq!(
        schemas["LookupRequest"]["properties"]["postal_code"]["pattern"],
        "^[0-9]{5}(-[0-9]{4})?$"
    );
    let params = doc["paths"]["/api/v1/payments"]["post"]["parameters"]
        .as_array()
        .unwrap();
    let key = params
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .unwrap();
    assert_eq!(key["in"], "header");
    assert_eq!(key["required"], true);
    assert_eq!(
        key["schema"]["pattern"], "^[!-~]([ -~]{0,253}[!-~])?$",
        "a malformed key is invalid by the document"
    );
    assert_eq!(key["schema"]["maxLength"], 255);

    // The server refuses what the document now refuses.
    let (status, _) = s
        .api(
            reqwest::Method::POST,
            "/api/v1/payments",
            Some(serde_json::json!({"items": [], "email": "a@example.com"})),
            Some("k-1"),
        )
        .await;
    assert_eq!(
        status, 400,
        "the server refuses an empty items list, as documented"
    );
}
