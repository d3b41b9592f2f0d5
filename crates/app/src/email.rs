//! Emails: written to the outbox in the same transaction as their cause, delivered by a
//! worker over SMTP with retries (or, in demo mode, kept for the staff outbox view).

use crate::crypto::columns;
use crate::ids::random_id;
use crate::payments::PaymentView;
use crate::{App, AppError};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

pub const MAX_ATTEMPTS: i64 = 8;

/// Where the worker sends mail.
#[derive(Clone)]
pub enum Mailer {
    Smtp {
        transport: Box<AsyncSmtpTransport<Tokio1Executor>>,
        from: Mailbox,
    },
    /// Demo mode: mail is not sent anywhere; staff read it in the outbox view.
    OutboxOnly,
}

impl Mailer {
    /// Plain SMTP to a relay the city runs (or the test sink). TLS relays come with config.
    /// SMTP to the city's relay. `security` is `starttls` (the default: upgrade, refuse if
    /// the server cannot), `tls` (implicit TLS, port 465) or `none`, which is accepted only
    /// for a relay on this machine (loopback), since reset links travel in these emails.
    pub fn smtp(host: &str, port: u16, from: &str, security: &str) -> Result<Mailer, AppError> {
        let from: Mailbox = from.parse().map_err(|_| {
            AppError::invalid(
                "email.from",
                "not a valid mailbox like \"City <pay@city.gov>\"",
            )
        })?;
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let builder = match security {
            "starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|e| AppError::invalid("email.smtp_host", format!("cannot set up TLS for {host}: {e}")))?,
            "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|e| AppError::invalid("email.smtp_host", format!("cannot set up TLS for {host}: {e}")))?,
            "none" if loopback => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            "none" => {
                return Err(AppError::invalid(
                    "email.security",
                    "plain SMTP is allowed only to a relay on this machine (localhost); use starttls or tls",
                ))
            }
            other => return Err(AppError::invalid("email.security", format!("{other:?} is not one of starttls, tls, none"))),
        };
        let transport = builder
            .port(port)
            .timeout(Some(std::time::Duration::from_secs(20)))
            .build();
        Ok(Mailer::Smtp {
            transport: Box::new(transport),
            from,
        })
    }
}

/// How long a node holds an email it is sending before another may try it.
pub const EMAIL_LEASE_SECS: i64 = 300;

impl App {
    pub(crate) async fn enqueue_email(
        &self,
        conn: &mut store::Conn,
        to: &str,
        subject: &str,
        body: &str,
        kind: &str,
    ) -> Result<(), AppError> {
        let id = domain::ids::EmailId::from_random(&random_id()).to_string();
        let sealed_to = self.seal(columns::OUTBOX_TO, to)?;
        let sealed_body = self.seal(columns::OUTBOX_BODY, body)?;
        store::outbox::enqueue(
            conn,
            &id,
            &sealed_to,
            &self.email_index(to),
            subject,
            &sealed_body,
            kind,
            self.now_unix(),
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn enqueue_receipt(
        &self,
        conn: &mut store::Conn,
        p: &PaymentView,
    ) -> Result<(), AppError> {
        let lang = crate::mail_text::Lang::parse(&store::payments::language_of(conn, &p.id).await?);
        let w = crate::mail_text::receipt(lang);
        let mut body = format!(
            "{}\n\n{}: {}\n{}: {}\n",
            w.thanks.replace("{city}", &self.config().city_name),
            w.confirmation,
            p.confirmation_number,
            w.amount,
            p.amount
        );
        if let (Some(brand), Some(last4)) = (&p.card_brand, &p.card_last4) {
            body.push_str(&format!(
                "{}: {} {} {}\n",
                w.card,
                brand_name(brand),
                w.ending_in,
                last4
            ));
        }
        body.push_str(&format!("\n{}:\n", w.applied_to));
        // Itemised by department, as the city's ledger has it.
        for i in &p.items {
            let what = match i.item_type.as_str() {
                "utility" => format!("{} {}", w.utility_account, i.account_number),
                crate::payments::CARD_FEE => w.card_fee.to_owned(),
                "permit" => format!("{} {}", w.permit_fees, i.account_number),
                "licence" => format!("{} {}", w.licence_fees, i.account_number),
                other => format!("{other} {}", i.account_number),
            };
            let department = crate::mail_text::department(lang, &i.item_type);
            body.push_str(&format!("  {department}: {what}: {}\n", i.amount));
        }
        body.push_str(&format!(
            "\n{}: {}/payments/{}/receipt\n\n{}\n",
            w.view,
            self.config().portal_base_url,
            p.id,
            w.keep
        ));
        let subject = format!("{} {}", w.subject, p.confirmation_number);
        self.enqueue_email(conn, &p.email, &subject, &body, "receipt")
            .await
    }

    /// Delivers due emails, each claimed before it is sent; returns how many were
    /// delivered.
    pub async fn deliver_emails(&self, mailer: &Mailer) -> Result<usize, AppError> {
        let now = self.now_unix();
        let due = {
            let mut conn = self.store.conn().await?;
            store::outbox::due(&mut conn, now, 50).await?
        };
        let due = due
            .into_iter()
            .map(|e| self.open_email(e))
            .collect::<Result<Vec<_>, _>>()?;
        let mut delivered = 0;
        for e in due {
            // Claimed first, so two nodes never send one email twice: the claim moves the
            // next attempt to the end of a lease, and a node that dies before recording the
            // outcome leaves it due again then.
            {
                let mut conn = self.store.conn().await?;
                if !store::outbox::claim(&mut conn, &e.id, self.now_unix(), EMAIL_LEASE_SECS)
                    .await?
                {
                    continue;
                }
            }
            let result = match mailer {
                Mailer::OutboxOnly => Ok("held_in_outbox"),
                Mailer::Smtp { transport, from } => send(transport, from, &e).await.map(|_| "sent"),
            };
            let mut conn = self.store.conn().await?;
            match result {
                Ok(status) => {
                    store::outbox::mark_sent(&mut conn, &e.id, status, self.now_unix()).await?;
                    delivered += 1;
                }
                Err(err) => {
                    let backoff = 30i64.saturating_mul(1 << e.attempts.clamp(0, 10));
                    tracing::warn!(email_id = %e.id, attempt = e.attempts + 1, error = %err, "email delivery failed");
                    store::outbox::mark_retry(
                        &mut conn,
                        &e.id,
                        &err,
                        self.now_unix() + backoff,
                        MAX_ATTEMPTS,
                    )
                    .await?;
                }
            }
        }
        Ok(delivered)
    }

    pub async fn emails_to(&self, to: &str) -> Result<Vec<store::outbox::EmailRow>, AppError> {
        let rows = {
            let mut conn = self.store.conn().await?;
            store::outbox::for_recipient(&mut conn, &self.email_index(to), 50).await?
        };
        rows.into_iter().map(|e| self.open_email(e)).collect()
    }

    /// An outbox row with its recipient and body decrypted.
    pub(crate) fn open_email(
        &self,
        mut e: store::outbox::EmailRow,
    ) -> Result<store::outbox::EmailRow, AppError> {
        e.to_addr = self.open(columns::OUTBOX_TO, &e.to_addr)?;
        e.body_text = self.open(columns::OUTBOX_BODY, &e.body_text)?;
        Ok(e)
    }
}

async fn send(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    from: &Mailbox,
    e: &store::outbox::EmailRow,
) -> Result<(), String> {
    let to: Mailbox = e
        .to_addr
        .parse()
        .map_err(|_| "recipient address is not valid".to_owned())?;
    let msg = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(e.subject.clone())
        .body(e.body_text.clone())
        .map_err(|err| format!("could not build message: {err}"))?;
    transport
        .send(msg)
        .await
        .map(|_| ())
        .map_err(|err| format!("smtp: {err}"))
}

pub fn brand_name(brand: &str) -> &str {
    match brand {
        "visa" => "Visa",
        "mastercard" => "Mastercard",
        "amex" => "American Express",
        "discover" => "Discover",
        other => other,
    }
}
