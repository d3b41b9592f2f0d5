//! Runs the sandbox processor on its own, for manual and browser checks:
//!
//! ```text
//! SANDBOX_ADDR=127.0.0.1:8082 cargo run -p processor --example sandbox
//! ```
//!
//! It creates one demo checkout session and prints its hosted page URL.
//! Keys are fixed test values; this is not how the product runs the sandbox.

use processor::client::StripeClient;
use processor::sandbox::{self, SandboxConfig};
use processor::{CreateCheckoutSession, LineItem, Processor};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("SANDBOX_ADDR").unwrap_or_else(|_| "127.0.0.1:8082".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let mut cfg = SandboxConfig::new("sk_test_example", base.clone(), "whsec_example");
    cfg.webhook_url = std::env::var("SANDBOX_WEBHOOK_URL").ok();
    let server = tokio::spawn(sandbox::serve(listener, cfg));

    let client = StripeClient::new(&base, "sk_test_example")?;
    let session = client
        .create_checkout_session(
            &CreateCheckoutSession {
                line_items: vec![
                    LineItem {
                        name: "Water and sewer, March".into(),
                        unit_amount: 4_250,
                        quantity: 1,
                    },
                    LineItem {
                        name: "Trash collection".into(),
                        unit_amount: 1_875,
                        quantity: 2,
                    },
                ],
                currency: "usd".into(),
                success_url: format!("{base}/healthz?session_id={{CHECKOUT_SESSION_ID}}"),
                cancel_url: format!("{base}/healthz"),
                client_reference_id: "demo".into(),
                metadata: vec![],
                customer_email: None,
                expires_at: None,
                locale: None,
            },
            "demo-session",
        )
        .await?;
    println!("{}", session.url.unwrap_or_default());
    server.await??;
    Ok(())
}
