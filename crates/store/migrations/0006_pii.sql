-- Personal data is sealed by the app (AES-256-GCM, `enc:v1:<key id>:...`); equality
-- lookups go through keyed blind indexes (hex HMAC-SHA256), never the sealed text.
ALTER TABLE payments ADD COLUMN email_index TEXT;
CREATE INDEX payments_by_email_index ON payments (email_index);
DROP INDEX payments_by_email;
ALTER TABLE outbox_emails ADD COLUMN to_index TEXT;
CREATE INDEX outbox_by_to_index ON outbox_emails (to_index, created_at);
