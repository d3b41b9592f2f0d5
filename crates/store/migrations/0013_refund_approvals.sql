-- Maker-checker refunds: a refund above the city's threshold (or any refund a clerk asks
-- for) waits `awaiting_approval`, its amount already reserved, until a second staff member
-- approves it (then `requested`, and the processor is asked) or rejects it (`rejected`,
-- the reservation given back).
ALTER TABLE payment_refunds ADD COLUMN approved_by TEXT;
ALTER TABLE payment_refunds ADD COLUMN review_note TEXT;
CREATE INDEX payment_refunds_by_status ON payment_refunds (status, created_at);
