//! Deterministic demo data: a small city's utility accounts with two years of bills.

use crate::crypto::columns;
use crate::ids::random_id;
use crate::{App, AppError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use store::accounts::{self, AccountRow, BillLineRow, BillRow, LedgerRow};
use store::StoreError;
use time::{Date, Duration, Month};

const FIRST: &[&str] = &[
    "Maria",
    "James",
    "Linda",
    "Robert",
    "Patricia",
    "Michael",
    "Jennifer",
    "David",
    "Elizabeth",
    "Jose",
    "Susan",
    "Daniel",
    "Jessica",
    "Thomas",
    "Sarah",
    "Carlos",
    "Karen",
    "Anthony",
    "Nancy",
    "Kevin",
    "Ana",
    "Brian",
    "Lisa",
    "Luis",
];
const LAST: &[&str] = &[
    "Garcia",
    "Smith",
    "Johnson",
    "Martinez",
    "Brown",
    "Lopez",
    "Davis",
    "Hernandez",
    "Wilson",
    "Gonzalez",
    "Anderson",
    "Nguyen",
    "Thomas",
    "Ramirez",
    "Moore",
    "Jackson",
    "Lee",
    "Perez",
    "Harris",
    "Clark",
    "Sanchez",
    "Lewis",
    "Walker",
    "Torres",
];
const STREETS: &[&str] = &[
    "Chester Ave",
    "Truxtun Ave",
    "F St",
    "Oak St",
    "California Ave",
    "Ming Ave",
    "Brundage Ln",
    "Union Ave",
    "Columbus St",
    "Niles St",
    "Mt Vernon Ave",
    "Panorama Dr",
    "Stockdale Hwy",
    "Olive Dr",
    "Coffee Rd",
    "Gosford Rd",
];
const ZIPS: &[&str] = &[
    "93301", "93304", "93305", "93306", "93307", "93308", "93309", "93311", "93312", "93313",
];

/// How an account has paid.
#[derive(Clone, Copy, PartialEq)]
enum Habit {
    /// Paid every bill but the latest, which is not yet due.
    Current,
    /// Paid everything, including the latest bill.
    PaidUp,
    /// The last two bills are unpaid; one is past due.
    PastDue,
}

fn months_back(d: Date, n: u32) -> Date {
    let total = d.year() * 12 + (d.month() as i32 - 1) - n as i32;
    let (y, m) = (total.div_euclid(12), total.rem_euclid(12) as u8 + 1);
    let month = Month::try_from(m).unwrap_or(Month::January);
    Date::from_calendar_date(y, month, d.day().min(28)).unwrap_or(d)
}

impl App {
    /// Seeds `n_accounts` accounts (numbers from 100001) if the database has none.
    /// Account 100001 (ZIP 93301) owes its latest bill; 100002 (ZIP 93301) owes nothing.
    /// Returns whether anything was written.
    pub async fn seed_demo(&self, n_accounts: u32) -> Result<bool, AppError> {
        let mut tx = self.store.begin().await?;
        if accounts::count(&mut tx).await? > 0 {
            return Ok(false);
        }
        let mut rng = StdRng::seed_from_u64(20_261_123);
        let today = self.now().date();
        let latest_issue = today - Duration::days(10);
        let now = self.now_unix();
        let currency = self.config().currency.code();
        for i in 0..n_accounts {
            let number = (100_001 + i).to_string();
            let zip = if i < 2 {
                "93301"
            } else {
                ZIPS[rng.gen_range(0..ZIPS.len())]
            };
            let habit = match i {
                0 => Habit::Current,
                1 => Habit::PaidUp,
                _ => match rng.gen_range(0..100) {
                    0..=69 => Habit::Current,
                    70..=84 => Habit::PaidUp,
                    _ => Habit::PastDue,
                },
            };
            let name = format!(
                "{} {}",
                FIRST[rng.gen_range(0..FIRST.len())],
                LAST[rng.gen_range(0..LAST.len())]
            );
            let street = format!(
                "{} {}",
                rng.gen_range(100..9900),
                STREETS[rng.gen_range(0..STREETS.len())]
            );
            accounts::insert(
                &mut tx,
                &AccountRow {
                    account_number: number.clone(),
                    postal_code: zip.into(),
                    holder_name: self.seal(columns::ACCOUNT_HOLDER_NAME, &name)?,
                    service_street: self.seal(columns::ACCOUNT_SERVICE_STREET, &street)?,
                    service_city: "Bakersfield, CA".into(),
                    currency: currency.into(),
                    created_at: now,
                },
            )
            .await?;
            let mut meter: i64 = rng.gen_range(10_000..90_000);
            let household: i64 = rng.gen_range(4..16); // hundred cubic feet per month, typical
            for k in (0..24u32).rev() {
                let issued = months_back(latest_issue, k);
                let period_end = issued - Duration::days(1);
                let period_start = months_back(issued, 1);
                let due = issued + Duration::days(21);
                let usage = (household + rng.gen_range(-3..=5)).max(1);
                let prev = meter;
                meter += usage;
                let water = 2_150 + usage * 312; // base charge plus tiered rate, cents
                let sewer = 3_875;
                let trash = 2_940;
                let bill_id = format!("bill_{number}_{}", issued.to_string().replace('-', ""));
                let bill = BillRow {
                    id: bill_id.clone(),
                    account_number: number.clone(),
                    period_start: period_start.to_string(),
                    period_end: period_end.to_string(),
                    issued_on: issued.to_string(),
                    due_on: due.to_string(),
                    amount_cents: water + sewer + trash,
                    meter_previous: Some(prev),
                    meter_current: Some(meter),
                    usage_units: Some(usage),
                    created_at: now,
                };
                let lines = [
                    ("water", format!("Water service: {usage} HCF"), water),
                    ("sewer", "Sewer service".to_owned(), sewer),
                    ("trash", "Trash and recycling".to_owned(), trash),
                ];
                let lines: Vec<BillLineRow> = lines
                    .into_iter()
                    .enumerate()
                    .map(|(n, (kind, description, amount_cents))| BillLineRow {
                        bill_id: bill_id.clone(),
                        line_no: n as i64 + 1,
                        kind: kind.into(),
                        description,
                        amount_cents,
                    })
                    .collect();
                accounts::insert_bill(&mut tx, &bill, &lines).await?;
                let issued_at = issued.midnight().assume_utc().unix_timestamp();
                accounts::post_ledger(
                    &mut tx,
                    &LedgerRow {
                        id: random_id(),
                        account_number: number.clone(),
                        kind: "bill".into(),
                        reference: bill_id.clone(),
                        amount_cents: bill.amount_cents,
                        description: format!("Bill issued {issued}"),
                        posted_at: issued_at,
                    },
                )
                .await?;
                let unpaid = match habit {
                    Habit::PaidUp => false,
                    Habit::Current => k == 0,
                    Habit::PastDue => k <= 1,
                };
                if !unpaid {
                    let paid_on = due - Duration::days(rng.gen_range(1..15));
                    let method = ["mail", "counter", "phone", "autopay"][rng.gen_range(0..4)];
                    accounts::post_ledger(
                        &mut tx,
                        &LedgerRow {
                            id: random_id(),
                            account_number: number.clone(),
                            kind: "payment".into(),
                            reference: format!("hist_{bill_id}"),
                            amount_cents: -bill.amount_cents,
                            description: format!("Payment by {method}"),
                            posted_at: paid_on.midnight().assume_utc().unix_timestamp(),
                        },
                    )
                    .await?;
                }
            }
        }
        self.audit(
            &mut tx,
            "system",
            "demo.seeded",
            "demo",
            "success",
            "-",
            &format!("{n_accounts} accounts"),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        // The web codes printed on the demo's "paper bills".
        self.issue_missing_linking_codes().await?;
        Ok(true)
    }
}

impl App {
    /// The demo's resident: a verified account with a known password, linked to utility
    /// account 100001 (which owes its latest bill), so a newcomer can sign in and try the
    /// cart at once. Returns the resident's id. Demo seeding only.
    pub async fn seed_demo_resident(
        &self,
        email: &str,
        password_plain: &str,
    ) -> Result<String, AppError> {
        let email = domain::EmailAddress::parse(email)
            .ok_or_else(|| AppError::invalid("email", "an email address like name@example.com"))?;
        let key = self.email_index(email.as_str());
        let mut tx = self.store.begin().await?;
        if let Some(r) = store::residents::by_email_key(&mut tx, &key).await? {
            return Ok(r.id);
        }
        let hash = crate::passwords::hash(password_plain.to_owned()).await?;
        let now = self.now_unix();
        let id = domain::ids::ResidentId::from_random(&crate::ids::random_id()).to_string();
        store::residents::insert(
            &mut tx,
            &store::residents::ResidentRow {
                id: id.clone(),
                email: self.seal(crate::crypto::columns::RESIDENT_EMAIL, email.as_str())?,
                email_key: key,
                password_hash: hash,
                email_verified_at: Some(now),
                disabled: 0,
                created_at: now,
            },
        )
        .await?;
        store::residents::link_account(&mut tx, &id, "100001", now).await?;
        self.audit(
            &mut tx,
            "system",
            "resident.demo_seeded",
            &id,
            "success",
            "-",
            "demo resident, linked to 100001",
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(id)
    }
}
