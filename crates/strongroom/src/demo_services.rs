//! The demo's permits and licences, seeded once with the demo data, so a newcomer can try
//! all three services at once: a resident (signed in with the printed password) linked to
//! utility account 100001, with a permit application waiting for review, an approved one
//! whose fees wait in the cart beside the utility bill, a draft to resume, a business
//! licence due for renewal in 20 days, one that expired 45 days ago (its renewal carries a
//! late penalty) and a new application whose fee is due. Licences are issued through real
//! payments at the sandbox processor with the clock set back, as they would have been.

use crate::demo_finance::pay_at_sandbox;
use anyhow::Context;
use app::licences::LicenceInput;
use app::payments::{Channel, PaymentRequest, RequestedInvoice};
use app::permits::{PermitInput, Review};
use app::{App, OffsetClock};
use domain::{EmailAddress, Money};

/// The demo resident's sign-in.
pub const RESIDENT_EMAIL: &str = "resident@demo.example";

const IP: &str = "127.0.0.1";
const PDF: &[u8] = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n";

fn permit(kind: &str, street: &str, scope: &str, valuation: &str, area: &str) -> PermitInput {
    PermitInput {
        permit_type: kind.into(),
        applicant_name: "Dana Demo".into(),
        applicant_phone: "661-555-0100".into(),
        site_street: street.into(),
        site_zip: "93301".into(),
        scope: scope.into(),
        valuation: valuation.into(),
        area_sq_ft: area.into(),
        contractor_licence: String::new(),
    }
}

fn licence(kind: &str, name: &str, street: &str, employees: &str, gross: &str) -> LicenceInput {
    LicenceInput {
        licence_type: kind.into(),
        business_name: name.into(),
        business_street: street.into(),
        business_zip: "93301".into(),
        employees: employees.into(),
        gross_receipts: gross.into(),
    }
}

/// Applies for a licence `days_ago` days back and pays its fee at the sandbox then.
async fn licence_issued(
    app: &App,
    clock: &OffsetClock,
    http: &reqwest::Client,
    resident: &str,
    input: &LicenceInput,
    days_ago: i64,
) -> anyhow::Result<()> {
    clock.set_offset(time::Duration::days(-days_ago));
    let id = app.apply_licence(resident, input, IP).await?;
    let (_, _, invoices) = app.licence(Some(resident), &id).await?;
    let inv = invoices.first().context("a licence invoice")?;
    let started = app
        .start_payment(PaymentRequest {
            language: None,
            items: vec![],
            invoices: vec![RequestedInvoice {
                invoice_id: inv.id.clone(),
                amount: Money::from_cents(inv.due_cents(), app.config().currency),
                expected_due_cents: Some(inv.due_cents()),
            }],
            email: EmailAddress::parse(RESIDENT_EMAIL).context("email")?,
            resident_id: Some(resident.to_owned()),
            channel: Channel::Portal,
            return_url: None,
            source_ip: IP.into(),
            form_key: None,
        })
        .await?;
    pay_at_sandbox(http, &started.checkout_url).await?;
    app.complete_return(&started.payment.id).await?;
    Ok(())
}

/// Seeds the permits and licences; see the module documentation.
pub async fn seed(app: &App, clock: &OffsetClock, resident_password: &str) -> anyhow::Result<()> {
    let resident = app
        .seed_demo_resident(RESIDENT_EMAIL, resident_password)
        .await?;
    let admin = app
        .staff_by_username("demo")
        .await?
        .context("the demo user exists")?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    // Licences first, each paid on the day it was issued.
    licence_issued(
        app,
        clock,
        &http,
        &resident,
        &licence("home-occupation", "Demo Bakery", "12 Elm St", "1", "40000"),
        365 + 45,
    )
    .await?;
    licence_issued(
        app,
        clock,
        &http,
        &resident,
        &licence(
            "food-service",
            "Demo Taqueria",
            "300 Chester Ave",
            "8",
            "350000",
        ),
        365 - 20,
    )
    .await?;
    clock.set_offset(time::Duration::ZERO);
    app.apply_licence(
        &resident,
        &licence(
            "general-business",
            "Demo Consulting",
            "1 Truxtun Ave",
            "3",
            "180000",
        ),
        IP,
    )
    .await?;

    // Permits: waiting for review; approved with fees due; a draft.
    let waiting = app
        .save_permit(
            &resident,
            None,
            &permit(
                "fence",
                "14 Elm St",
                "A 7-foot cedar fence on the north side",
                "3500",
                "0",
            ),
            IP,
        )
        .await?;
    app.attach_plan(&resident, &waiting, "fence-site-plan.pdf", PDF, IP)
        .await?;
    app.submit_permit(&resident, &waiting, IP).await?;
    let approved = app
        .save_permit(
            &resident,
            None,
            &permit(
                "residential-alteration",
                "14 Elm St",
                "Convert the garage into a bedroom",
                "18000",
                "240",
            ),
            IP,
        )
        .await?;
    app.attach_plan(&resident, &approved, "garage-conversion.pdf", PDF, IP)
        .await?;
    app.submit_permit(&resident, &approved, IP).await?;
    app.review_permit(&admin.id, &approved, &Review::Approve, IP)
        .await?;
    app.save_permit(
        &resident,
        None,
        &permit(
            "solar",
            "14 Elm St",
            "12 rooftop panels, 4.8 kW",
            "16000",
            "320",
        ),
        IP,
    )
    .await?;
    tracing::info!("seeded the demo's permits and licences");
    Ok(())
}
