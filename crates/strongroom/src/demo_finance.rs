//! The demo's finance side, seeded once with the demo data: a business day (yesterday) of
//! real payments through the sandbox processor, a refund, a capture for a checkout we never
//! created (an open exception), and that day's reconciliation. Yesterday is closed, so its
//! postings wait to be exported. The payments are made with the clock set back a day (the
//! portal and the sandbox share it), exactly as they would have been made then.

use anyhow::Context;
use app::payments::{Channel, ItemProof, PaymentRequest, RequestedItem};
use app::{App, OffsetClock};
use domain::{AccountNumber, EmailAddress, Money, PostalCode};

/// Accounts (from 100003 on) paid yesterday, and how much of each balance.
const PAYERS: usize = 6;

pub(crate) async fn pay_at_sandbox(
    http: &reqwest::Client,
    checkout_url: &str,
) -> anyhow::Result<()> {
    let origin = checkout_url
        .split('/')
        .take(3)
        .collect::<Vec<_>>()
        .join("/");
    let res = http
        .post(checkout_url)
        .header("origin", origin)
        .form(&[
            ("card_number", "4242 4242 4242 4242"),
            ("expiry", "12/39"),
            ("cvc", "123"),
            ("name", "Demo Payer"),
            ("zip", "93301"),
        ])
        .send()
        .await
        .context("paying at the sandbox")?;
    anyhow::ensure!(
        res.status().is_redirection(),
        "the sandbox refused a demo card: {}",
        res.status()
    );
    Ok(())
}

/// Seeds the finance side; see the module documentation.
pub async fn seed(
    app: &App,
    clock: &OffsetClock,
    processor_origin: &str,
    processor_key: &str,
) -> anyhow::Result<()> {
    let now = app.now().unix_timestamp();
    let today = app.business_date(now)?;
    let yesterday = today - time::Duration::days(1);
    let (from, _) = app.business_day_bounds(yesterday)?;
    // 11:00 city time on yesterday's business day (its day opened at 17:00 the day before).
    clock.set_offset(time::Duration::seconds(from + 18 * 3600 - now));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let admin = app
        .staff_by_username("demo")
        .await?
        .context("the demo user exists")?;
    let mut paid = Vec::new();
    let mut n = 100_003u32;
    while paid.len() < PAYERS && n < 100_200 {
        let account = n.to_string();
        n += 1;
        let summary = app.account_summary(&account).await?;
        let balance = summary.balance.cents();
        if balance <= 0 {
            continue;
        }
        // Most pay in full; every third pays half.
        let cents = if paid.len() % 3 == 2 {
            balance / 2
        } else {
            balance
        };
        let zip = {
            let mut c = app.store.conn().await?;
            store::accounts::get(&mut c, &account)
                .await?
                .context("demo account")?
                .postal_code
        };
        let started = app
            .start_payment(PaymentRequest {
                language: None,
                invoices: vec![],
                items: vec![RequestedItem {
                    account: AccountNumber::parse(&account).context("account")?,
                    proof: ItemProof::PostalCode(PostalCode::parse(&zip).context("zip")?),
                    amount: Money::from_cents(cents, app.config().currency),
                }],
                email: EmailAddress::parse(&format!("payer{}@example.com", paid.len() + 1))
                    .context("email")?,
                resident_id: None,
                channel: Channel::Api,
                return_url: None,
                source_ip: "127.0.0.1".into(),
                form_key: None,
            })
            .await?;
        pay_at_sandbox(&http, &started.checkout_url).await?;
        // Settled now (the webhook may come later and finds it settled).
        app.complete_return(&started.payment.id).await?;
        paid.push((started.payment.id, account));
    }
    // A refund of part of the first payment, by the demo administrator.
    if let Some((id, account)) = paid.first() {
        app.refund_payment(
            &admin,
            id,
            account,
            "5.00",
            "Demo: late fee waived",
            "127.0.0.1",
        )
        .await?;
    }
    // A capture for a checkout session nobody opened through the portal (someone with the
    // city's keys, or a lost payment record): an exception for staff to resolve.
    let client = processor::client::StripeClient::new(processor_origin, processor_key)?;
    let session = processor::Processor::create_checkout_session(
        &client,
        &processor::CreateCheckoutSession {
            line_items: vec![processor::LineItem {
                name: "Utility payment".into(),
                unit_amount: 8_450,
                quantity: 1,
            }],
            currency: "usd".into(),
            success_url: format!("{}/", app.config().portal_base_url),
            cancel_url: format!("{}/", app.config().portal_base_url),
            client_reference_id: "unknown".into(),
            metadata: vec![],
            customer_email: None,
            expires_at: None,
            locale: None,
        },
        &app::ids::random_id(),
    )
    .await?;
    pay_at_sandbox(&http, session.url.as_deref().context("open session")?).await?;
    let session = processor::Processor::retrieve_checkout_session(&client, &session.id).await?;
    app.settle(&session, app::payments::SettleSource::Webhook, None)
        .await?;
    // Back to the present: yesterday is closed; reconcile it.
    clock.set_offset(time::Duration::ZERO);
    app.reconcile_day(yesterday, "system").await?;
    tracing::info!(payments = paid.len(), day = %yesterday, "seeded a business day of demo payments");
    Ok(())
}
