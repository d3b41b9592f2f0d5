//! The payment state machine.
//!
//! ```text
//! pending --succeed--> succeeded --refund(part)--> partially_refunded --refund(rest)--> refunded
//!    |--fail------> failed          \--refund(all)-----------------------------------> refunded
//!    |--cancel----> canceled
//!    \--expire----> expired
//! ```
//! Only `pending` can be decided; only a succeeded payment can be refunded, never beyond
//! what was captured.

use crate::money::Money;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    Succeeded,
    Failed,
    Canceled,
    Expired,
    PartiallyRefunded,
    Refunded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentEvent {
    Succeed,
    Fail,
    Cancel,
    Expire,
    /// A refund of `amount`, bringing the total refunded to `refunded_after`, of `captured`.
    Refund {
        refunded_after: Money,
        captured: Money,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {from:?} payment cannot {event}")]
pub struct TransitionError {
    pub from: PaymentStatus,
    pub event: &'static str,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 7] = [
        PaymentStatus::Pending,
        PaymentStatus::Succeeded,
        PaymentStatus::Failed,
        PaymentStatus::Canceled,
        PaymentStatus::Expired,
        PaymentStatus::PartiallyRefunded,
        PaymentStatus::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Succeeded => "succeeded",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Canceled => "canceled",
            PaymentStatus::Expired => "expired",
            PaymentStatus::PartiallyRefunded => "partially_refunded",
            PaymentStatus::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<PaymentStatus> {
        PaymentStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// True once money was captured (whatever has been refunded since).
    pub fn captured(self) -> bool {
        matches!(
            self,
            PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded | PaymentStatus::Refunded
        )
    }

    pub fn is_final(self) -> bool {
        !matches!(
            self,
            PaymentStatus::Pending | PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded
        )
    }

    pub fn apply(self, event: PaymentEvent) -> Result<PaymentStatus, TransitionError> {
        use PaymentEvent as E;
        use PaymentStatus as S;
        let err = |name| TransitionError {
            from: self,
            event: name,
        };
        match (self, event) {
            (S::Pending, E::Succeed) => Ok(S::Succeeded),
            (S::Pending, E::Fail) => Ok(S::Failed),
            (S::Pending, E::Cancel) => Ok(S::Canceled),
            (S::Pending, E::Expire) => Ok(S::Expired),
            (
                S::Succeeded | S::PartiallyRefunded,
                E::Refund {
                    refunded_after,
                    captured,
                },
            ) => {
                if !refunded_after.is_positive()
                    || refunded_after.currency() != captured.currency()
                    || refunded_after.cents() > captured.cents()
                {
                    Err(err("be refunded by that amount"))
                } else if refunded_after.cents() == captured.cents() {
                    Ok(S::Refunded)
                } else {
                    Ok(S::PartiallyRefunded)
                }
            }
            (_, E::Succeed) => Err(err("succeed")),
            (_, E::Fail) => Err(err("fail")),
            (_, E::Cancel) => Err(err("be canceled")),
            (_, E::Expire) => Err(err("expire")),
            (_, E::Refund { .. }) => Err(err("be refunded")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_event() -> impl Strategy<Value = PaymentEvent> {
        prop_oneof![
            Just(PaymentEvent::Succeed),
            Just(PaymentEvent::Fail),
            Just(PaymentEvent::Cancel),
            Just(PaymentEvent::Expire),
            (0i64..=20_000).prop_map(|r| PaymentEvent::Refund {
                refunded_after: Money::usd(r),
                captured: Money::usd(10_000)
            }),
        ]
    }

    #[test]
    fn statuses_round_trip_as_text() {
        for s in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn refunds() {
        let ok = PaymentStatus::Succeeded.apply(PaymentEvent::Refund {
            refunded_after: Money::usd(500),
            captured: Money::usd(1000),
        });
        assert_eq!(ok, Ok(PaymentStatus::PartiallyRefunded));
        let full = PaymentStatus::PartiallyRefunded.apply(PaymentEvent::Refund {
            refunded_after: Money::usd(1000),
            captured: Money::usd(1000),
        });
        assert_eq!(full, Ok(PaymentStatus::Refunded));
        assert!(PaymentStatus::Succeeded
            .apply(PaymentEvent::Refund {
                refunded_after: Money::usd(1001),
                captured: Money::usd(1000)
            })
            .is_err());
        assert!(PaymentStatus::Pending
            .apply(PaymentEvent::Refund {
                refunded_after: Money::usd(1),
                captured: Money::usd(1000)
            })
            .is_err());
    }

    proptest! {
        /// Whatever sequence of events arrives, a payment is decided at most once, is only
        /// refunded after it succeeded, and final states never change.
        #[test]
        fn decided_at_most_once(events in proptest::collection::vec(any_event(), 0..12)) {
            let mut s = PaymentStatus::Pending;
            let mut decisions = 0;
            for e in events {
                let before = s;
                if let Ok(next) = s.apply(e) {
                    if before == PaymentStatus::Pending { decisions += 1; }
                    prop_assert!(!before.is_final());
                    if matches!(e, PaymentEvent::Refund { .. }) { prop_assert!(before.captured()); }
                    s = next;
                }
            }
            prop_assert!(decisions <= 1);
        }
    }
}
