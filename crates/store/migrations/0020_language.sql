-- The language a resident reads ("en", "es"): their emails are written in it. Remembered
-- from registration and each sign-in. A payment keeps the language its receipt is sent in
-- (quick pay has no resident).
ALTER TABLE residents ADD COLUMN language TEXT NOT NULL DEFAULT 'en';
ALTER TABLE payments ADD COLUMN language TEXT NOT NULL DEFAULT 'en';
