// Browser journeys for Strongroom in real headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core), with axe-core (WCAG 2.1 A/AA) on every page visited, and a
// failure on any console error, CSP violation, page error or failed sub-resource.
//
// Started by crates/strongroom/tests/it/browser.rs, which runs a real server and passes:
//   PORTAL_URL, STAFF_URL, PROCESSOR_URL  base URLs of the three listeners (portal and staff
//                                         on http://localhost:PORT: passkeys need a domain name)
//   STAFF_PASSWORD                        password of staff user `demo`
//   STAFF_TOTP_SECRET                     base32 TOTP secret of staff user `demo` (enrolled)
//   STAFF_TOTP_TIME                       Unix time of the server's clock (default: now;
//                                         the clock must stand still: staff sign-ins by
//                                         code use its step -1, 0 and +1, in that order)
//   LINK_ACCOUNTS                         JSON [{account_number, postal_code, linking_code}, ...] (two accounts
//                                         that owe something)
//   DECLINE_ACCOUNT                       JSON {account_number, postal_code} of an account
//                                         that owes something (default 100001: see below)
//   SCREENSHOT_DIR                        where quick-pay.png, hosted-card-page.png, dashboard.png go
// Optional: CHROMIUM_PATH (default /usr/bin/chromium), FAILURE_DIR (screenshots of failed
// journeys; default <tmp>/strongroom-browser-failures), ONLY (run journeys whose name
// contains this text).
//
// Exits non-zero on any failure; the last line is always `N passed, M failed`.

import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';
import { readFileSync, mkdirSync } from 'node:fs';
import { createHmac } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const AXE_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];

function env(name, fallback) {
  const v = process.env[name];
  if (v !== undefined && v !== '') return v;
  if (fallback !== undefined) return fallback;
  console.error(`journeys: environment variable ${name} is required`);
  process.exit(2);
}

const PORTAL = new URL(env('PORTAL_URL')).origin;
const STAFF = new URL(env('STAFF_URL')).origin;
const PROCESSOR = new URL(env('PROCESSOR_URL')).origin;
const SCREENSHOT_DIR = env('SCREENSHOT_DIR');
const STAFF_PASSWORD = env('STAFF_PASSWORD');
const STAFF_TOTP_SECRET = env('STAFF_TOTP_SECRET');
const STAFF_TOTP_TIME = Number(env('STAFF_TOTP_TIME', String(Math.floor(Date.now() / 1000))));

// RFC 6238 TOTP (HMAC-SHA1, 6 digits, 30-second steps) of a base32 secret at Unix time `at`.
function totp(secretBase32, at) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const bytes = [];
  let bits = 0;
  let value = 0;
  for (const ch of secretBase32.replace(/[\s=]/g, '').toUpperCase()) {
    const v = alphabet.indexOf(ch);
    if (v < 0) throw new Error('STAFF_TOTP_SECRET is not base32');
    value = ((value << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bytes.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 30)));
  const mac = createHmac('sha1', Buffer.from(bytes)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1000000).padStart(6, '0');
}
const LINK_ACCOUNTS = JSON.parse(
  env('LINK_ACCOUNTS', '[{"account_number":"100003","postal_code":"93301"},{"account_number":"100004","postal_code":"93301"}]'),
);
const CHROMIUM = env('CHROMIUM_PATH', '/usr/bin/chromium');
// The business day with a payment and a refund-free settlement, and a reconciled day.
const FINANCE_DAY = env('FINANCE_DAY', '2026-11-16');
const RECONCILED_DAY = env('RECONCILED_DAY', '2026-11-15');
const FAILURE_DIR = env('FAILURE_DIR', path.join(tmpdir(), 'strongroom-browser-failures'));
const ONLY = process.env.ONLY || '';

// Demo seed: 100001 is in ZIP 93301 and owes its latest bill. The declined-card journey
// needs an account that still owes something after the quick-pay journey paid 100001 in
// full; so it runs first and, without DECLINE_ACCOUNT, uses 100001 too (it charges nothing).
const QUICK_PAY_ACCOUNT = { account_number: '100001', postal_code: '93301' };
const DECLINE_ACCOUNT = JSON.parse(env('DECLINE_ACCOUNT', JSON.stringify(QUICK_PAY_ACCOUNT)));
const GOOD_CARD = '4242 4242 4242 4242';
const DECLINED_CARD = '4000 0000 0000 0002';
const RESIDENT_PASSWORD = 'purple elephants juggle quietly';

mkdirSync(SCREENSHOT_DIR, { recursive: true });

// ---------------------------------------------------------------------------------------
// Watching pages: console errors, CSP violations, page errors, failed sub-resources, and
// which documents were loaded (every one of them must have been audited with axe).

class Watch {
  constructor(name) {
    this.name = name;
    this.problems = [];
    this.loaded = new Set(); // document URLs committed in a main frame
    this.audited = new Set();
    this.allowedConsole = []; // regexes for expected console errors (e.g. a 402 document)
  }

  attach(page) {
    page.on('console', (msg) => {
      const text = msg.text();
      const csp = /Content Security Policy/i.test(text);
      if (msg.type() !== 'error' && !csp) return;
      if (!csp && this.allowedConsole.some((re) => re.test(text))) return;
      const where = msg.location()?.url || page.url();
      this.problems.push(`${csp ? 'CSP violation' : 'console error'} on ${where}: ${text}`);
    });
    page.on('pageerror', (err) => this.problems.push(`page error on ${page.url()}: ${err.message}`));
    page.on('requestfailed', (req) => {
      // A document request is "aborted" when a navigation replaces it; that is not a failure.
      if (req.resourceType() === 'document') return;
      this.problems.push(`request failed: ${req.resourceType()} ${req.url()}: ${req.failure()?.errorText}`);
    });
    page.on('response', (res) => {
      const req = res.request();
      if (req.resourceType() !== 'document' && res.status() >= 400) {
        this.problems.push(`sub-resource ${req.resourceType()} ${res.url()} answered ${res.status()}`);
      }
    });
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) this.loaded.add(stripHash(frame.url()));
    });
  }

  assertClean() {
    const unaudited = [...this.loaded].filter((u) => u !== 'about:blank' && !this.audited.has(u));
    const problems = [...this.problems];
    if (unaudited.length) problems.push(`pages visited but not audited with axe: ${unaudited.join(', ')}`);
    if (problems.length) throw new Error(`${this.name}: ${problems.length} problem(s):\n  - ${problems.join('\n  - ')}`);
  }
}

function stripHash(u) {
  const x = new URL(u);
  x.hash = '';
  return x.href;
}

/// axe-core (WCAG 2.0/2.1 A and AA) on the current page; throws on any violation. On our
/// own pages it also checks that the USWDS stylesheet and our stylesheet really applied.
async function audit(page, watch, what) {
  await page.waitForLoadState('load');
  const url = stripHash(page.url());
  // Evaluated over the DevTools protocol, so the pages' CSP (script-src 'self') is not
  // involved and not weakened.
  await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(async (tags) => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { runOnly: { type: 'tag', values: tags }, resultTypes: ['violations'] });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      targets: v.nodes.map((n) => `${n.target.join(' ')}${n.failureSummary ? ` (${n.failureSummary.replace(/\s+/g, ' ').trim()})` : ''}`),
    }));
  }, AXE_TAGS);
  watch.audited.add(url);
  if (result.length) {
    const lines = result.map((v) => `${v.id} [${v.impact}] ${v.help}\n      ${v.targets.join('\n      ')}`);
    throw new Error(`axe: ${result.length} violation(s) on ${what} (${url}):\n    ${lines.join('\n    ')}`);
  }
  const origin = new URL(url).origin;
  if (origin === PORTAL || origin === STAFF) {
    const styled = await page.evaluate(() => {
      const sheets = [...document.styleSheets];
      const uswds = sheets.find((s) => s.href && s.href.endsWith('/assets/uswds/css/uswds.min.css'));
      const app = sheets.find((s) => s.href && s.href.endsWith('/assets/app.css'));
      const font = getComputedStyle(document.body).fontFamily;
      return { uswds: uswds ? uswds.cssRules.length : 0, app: Boolean(app), font };
    });
    assert.ok(styled.uswds > 100, `USWDS stylesheet did not apply on ${url}`);
    assert.ok(styled.app, `app.css missing on ${url}`);
    assert.match(styled.font, /Source Sans/i, `USWDS font not applied on ${url} (body font: ${styled.font})`);
  }
  console.log(`    ok  axe + console: ${what}`);
}

async function screenshot(page, file) {
  const p = path.join(SCREENSHOT_DIR, file);
  await page.screenshot({ path: p, fullPage: true });
  console.log(`    screenshot ${p}`);
}

async function text(page) {
  return (await page.locator('main').innerText()).replace(/\s+/g, ' ');
}

async function waitForOrigin(page, origin) {
  await page.waitForURL((u) => u.origin === origin, { timeout: 15000 });
}

function dollars(cents) {
  return `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, '0')}`;
}

/// The hosted card page: fill and pay (or be declined).
async function fillCard(page, card) {
  await page.getByLabel('Card number').fill(card);
  await page.getByLabel('Expiration (MM/YY)').fill('12/30');
  await page.getByLabel('Security code').fill('123');
  await page.getByLabel('Name on card').fill('Pat Payer');
  await page.getByLabel('ZIP code').fill('93301');
  await page.getByRole('button', { name: 'Pay', exact: true }).click();
}

/// After the processor sends the payer back: the receipt, once the payment is decided.
async function expectReceipt(page, watch) {
  await waitForOrigin(page, PORTAL);
  await page.getByRole('heading', { level: 1, name: 'Payment received' }).waitFor({ timeout: 20000 });
  await audit(page, watch, 'receipt');
  const confirmation = (await page.locator('#confirmation-number').innerText()).trim();
  assert.match(confirmation, /\S{4,}/, 'a confirmation number is shown');
  assert.equal((await page.locator('#payment-status').innerText()).trim(), 'Paid');
  return confirmation;
}

async function startQuickPay(page, watch, account) {
  await page.goto(`${PORTAL}/`);
  await audit(page, watch, 'portal home');
  await page.getByLabel('Account number').fill(account.account_number);
  await page.getByLabel('Service ZIP code').fill(account.postal_code);
  await page.getByRole('button', { name: 'Find my bill' }).click();
  await page.getByRole('heading', { level: 1, name: 'Pay your bill' }).waitFor();
  await audit(page, watch, 'quick pay: pay page');
}

// ---------------------------------------------------------------------------------------
// Journeys

async function quickPay({ newPage }) {
  const { page, watch } = await newPage('quick pay');
  await startQuickPay(page, watch, QUICK_PAY_ACCOUNT);
  await screenshot(page, 'quick-pay.png');
  const amount = await page.getByLabel('Amount to pay').inputValue();
  assert.match(amount, /^\d[\d,]*\.\d\d$/, `the full balance is prefilled (got ${amount})`);
  await page.getByLabel('Email address').fill('payer@example.com');
  await page.getByRole('button', { name: 'Continue to secure payment' }).click();
  await waitForOrigin(page, PROCESSOR);
  assert.notEqual(new URL(page.url()).origin, PORTAL, 'card entry is on another origin');
  await page.getByLabel('Card number').waitFor();
  await audit(page, watch, 'hosted card page');
  await screenshot(page, 'hosted-card-page.png');
  assert.match(await text(page), new RegExp(`Pay \\$${amount.replace('.', '\\.')}`), 'the hosted page shows the amount');
  await fillCard(page, GOOD_CARD);
  const confirmation = await expectReceipt(page, watch);
  assert.match(await text(page), new RegExp(`\\$${amount.replace('.', '\\.')}`), 'the receipt shows the amount paid');
  console.log(`    confirmation number ${confirmation}`);
  watch.assertClean();
}

async function declinedCard({ newPage }) {
  const { page, watch } = await newPage('declined card');
  // The hosted page answers 402 to a declined card; Chromium logs that document status.
  watch.allowedConsole.push(/Failed to load resource: the server responded with a status of 402/);
  await startQuickPay(page, watch, DECLINE_ACCOUNT);
  const full = await page.getByLabel('Amount to pay').inputValue();
  const fullCents = Math.round(Number(full.replace(/,/g, '')) * 100);
  assert.ok(fullCents > 1, `account ${DECLINE_ACCOUNT.account_number} owes something (balance ${full})`);
  const partial = dollars(Math.floor(fullCents / 2));
  await page.getByLabel('Amount to pay').fill(partial);
  await page.getByLabel('Email address').fill('declined@example.com');
  await page.getByRole('button', { name: 'Continue to secure payment' }).click();
  await waitForOrigin(page, PROCESSOR);
  await page.getByLabel('Card number').waitFor();
  await audit(page, watch, 'hosted card page (partial amount)');
  assert.match(await text(page), new RegExp(`Pay \\$${partial.replace('.', '\\.')}`), 'the hosted page shows the partial amount');
  await fillCard(page, DECLINED_CARD);
  await page.getByRole('heading', { name: 'Payment declined' }).waitFor();
  await audit(page, watch, 'hosted card page: declined');
  assert.match(await text(page), /Your card was declined\./);
  await page.getByRole('link', { name: 'Cancel and return' }).click();
  await waitForOrigin(page, PORTAL);
  await page.getByRole('heading', { level: 1, name: 'Payment not completed' }).waitFor();
  await audit(page, watch, 'receipt: not completed');
  const body = await text(page);
  assert.match(body, /card was declined/i, 'the portal says the card was declined');
  assert.match(body, /Nothing was charged/, 'the portal says nothing was charged');
  watch.assertClean();
}

// Staff sign-in codes: the server's clock stands still, a code is accepted for its step and
// one either side, and never twice. So every staff sign-in by code in one run takes the
// next step: three in all (the resident journeys and the staff passkey journey).
let staffCodeStep = -1;

function nextStaffCode() {
  assert.ok(staffCodeStep <= 1, 'at most three staff sign-ins by code per run (steps -1, 0, +1 of the server clock)');
  const code = totp(STAFF_TOTP_SECRET, STAFF_TOTP_TIME + 30 * staffCodeStep);
  staffCodeStep += 1;
  return code;
}

/// The back office's sign-in page, up to the sign-in code page (password accepted).
async function staffPassword(page, watch, what) {
  await page.goto(`${STAFF}/login`);
  await audit(page, watch, `staff login${what}`);
  await page.getByLabel('Username').fill('demo');
  await page.getByLabel('Password').fill(STAFF_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Enter your sign-in code' }).waitFor();
}

/// Staff user `demo` signs in with password and TOTP code; ends on "Find a payment".
async function staffSignIn(page, watch) {
  await staffPassword(page, watch, '');
  await audit(page, watch, 'staff: sign-in code');
  await page.getByLabel('Sign-in code').fill(nextStaffCode());
  await page.getByRole('button', { name: 'Verify and sign in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Find a payment' }).waitFor();
  await audit(page, watch, 'staff: find a payment');
}

/// A resident registers, and confirms the email with the link read in the staff back
/// office's outbox. Returns the email address.
async function registerResident(newPage, page, watch, name) {
  // Fixed per journey (each run has a fresh server), so the screenshots stay the same.
  const email = `${name}@example.com`;

  await page.goto(`${PORTAL}/register`);
  await audit(page, watch, 'register');
  await page.getByLabel('Email address').fill(email);
  await page.getByLabel('Password').fill(RESIDENT_PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('heading', { level: 1, name: 'Check your email' }).waitFor();
  await audit(page, watch, 'register: check your email');

  // The verification link, read in the staff back office's outbox (its own browser
  // context: cookies are per host, not per port).
  const staff = await newPage('staff back office');
  const s = staff.page;
  await staffSignIn(s, staff.watch);
  await s.getByRole('link', { name: 'Email outbox' }).click();
  await s.getByRole('heading', { level: 1, name: 'Email outbox' }).waitFor();
  await audit(s, staff.watch, 'staff: email outbox');
  await s.getByRole('row').filter({ hasText: email }).getByRole('link', { name: 'Confirm your email address' }).first().click();
  await s.getByRole('heading', { level: 1, name: 'Confirm your email address' }).waitFor();
  await audit(s, staff.watch, 'staff: outbox email');
  const mail = await s.locator('pre').innerText();
  const link = mail.match(/https?:\/\/\S+\/verify\?\S+/)?.[0];
  assert.ok(link, `the email has a verification link:\n${mail}`);
  assert.equal(new URL(link).origin, PORTAL, 'the verification link points at the portal');
  staff.watch.assertClean();

  await page.goto(link);
  await page.getByRole('heading', { level: 1, name: 'Email confirmed' }).waitFor();
  await audit(page, watch, 'verify: email confirmed');
  return email;
}

/// The resident's email and password on the portal's login page (the step before any code).
async function residentPassword(page, watch, email, what) {
  await page.goto(`${PORTAL}/login`);
  await audit(page, watch, `login${what}`);
  await page.getByLabel('Email address').fill(email);
  await page.getByLabel('Password').fill(RESIDENT_PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
}

async function resident({ newPage }) {
  assert.equal(LINK_ACCOUNTS.length, 2, 'LINK_ACCOUNTS names two accounts');
  const { page, watch } = await newPage('resident');
  const email = await registerResident(newPage, page, watch, 'resident');

  await residentPassword(page, watch, email, '');
  await page.waitForURL(`${PORTAL}/dashboard`);
  await page.getByRole('heading', { level: 1, name: 'My accounts' }).waitFor();
  await audit(page, watch, 'dashboard (no accounts)');

  for (const account of LINK_ACCOUNTS) {
    await page.goto(`${PORTAL}/accounts/link`);
    await audit(page, watch, 'link an account');
    await page.getByLabel('Account number').fill(account.account_number);
    await page.getByLabel('Web code').fill(account.linking_code);
    await page.getByRole('button', { name: 'Link account' }).click();
    await page.waitForURL((u) => u.pathname === `/accounts/${account.account_number}`);
    await audit(page, watch, `account ${account.account_number} (just linked)`);
  }

  for (const lang of ['en', 'es']) {
    await page.goto(`${PORTAL}/account/notices?lang=${lang}`);
    await audit(page, watch, `email notices (${lang})`);
    await noSidewaysScroll(page, `email notices (${lang})`);
  }
  await page.goto(`${PORTAL}/dashboard?lang=en`);
  await audit(page, watch, 'dashboard (two accounts)');
  await screenshot(page, 'dashboard.png');
  for (const account of LINK_ACCOUNTS) {
    await page.getByLabel(`Pay account ${account.account_number}`).check();
  }
  await page.getByRole('button', { name: 'Continue to secure payment' }).click();
  await waitForOrigin(page, PROCESSOR);
  await page.getByLabel('Card number').waitFor();
  await audit(page, watch, 'hosted card page (two accounts)');
  await fillCard(page, GOOD_CARD);
  await expectReceipt(page, watch);
  const receipt = await text(page);
  for (const account of LINK_ACCOUNTS) assert.ok(receipt.includes(account.account_number), `the receipt lists ${account.account_number}`);

  await page.goto(`${PORTAL}/dashboard`);
  await audit(page, watch, 'dashboard (paid)');
  for (const account of LINK_ACCOUNTS) {
    const row = page.locator('table tbody tr').filter({ has: page.getByRole('link', { name: account.account_number, exact: true }) });
    const balance = (await row.locator('td.sr-amount').innerText()).trim();
    assert.equal(balance, '$0.00', `account ${account.account_number} is paid off on the dashboard`);
  }
  assert.match(await text(page), /Nothing is due on your accounts/);
  // The resident's tables fit a 320 px screen (they scroll in their own box), both languages.
  for (const lang of ['en', 'es']) {
    await page.goto(`${PORTAL}/dashboard?lang=${lang}`);
    await check(page, watch, `dashboard (${lang})`);
    await page.goto(`${PORTAL}/accounts/${LINK_ACCOUNTS[0].account_number}?lang=${lang}`);
    await check(page, watch, `account detail (${lang})`);
    await page.goto(`${PORTAL}/payments?lang=${lang}`);
    await check(page, watch, `payment history (${lang})`);
  }
  await page.goto(`${PORTAL}/dashboard?lang=en`);
  await audit(page, watch, 'dashboard (back in English)');
  watch.assertClean();
}

/// A virtual authenticator (CTAP2, built in, with user verification) for this page, through
/// the DevTools protocol: WebAuthn ceremonies on this page use it, with no prompt.
async function addVirtualAuthenticator(page) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  return { cdp, authenticatorId };
}

async function passkeyCount(authenticator) {
  const { credentials } = await authenticator.cdp.send('WebAuthn.getCredentials', { authenticatorId: authenticator.authenticatorId });
  return credentials.length;
}

/// On a security page (the back office's /profile or the portal's /account/security, whose
/// forms post to `${prefix}/passkeys`): add a passkey named `name` through the "Add a
/// passkey" page. Returns once the browser's answer is posted and the server's page loaded
/// (the caller checks what it shows).
async function createPasskey(page, watch, origin, prefix, name, password, what) {
  const section = page.getByRole('heading', { level: 2, name: 'Passkeys' });
  await section.waitFor();
  await page.getByLabel('Passkey name').fill(name);
  // Adding a second factor takes the password again (a stolen session alone cannot).
  await page.locator('#passkey_add_password').fill(password);
  await page.getByRole('button', { name: 'Add a passkey' }).click();
  await page.waitForURL(`${origin}${prefix}/passkeys/new`);
  await page.getByRole('heading', { level: 1, name: 'Add a passkey' }).waitFor();
  // passkey.js unhides the form once it has checked the browser can make passkeys.
  const create = page.getByRole('button', { name: 'Create passkey' });
  await create.waitFor();
  await audit(page, watch, `${what}: add a passkey`);
  assert.match(await text(page), new RegExp(`Passkey name: ${name}`), 'the page names the passkey being added');
  await create.click();
  await page.waitForURL(`${origin}${prefix}/passkeys`);
}

function passkeyRow(page, name) {
  return page.getByRole('table', { name: 'Passkeys' }).getByRole('row').filter({ has: page.getByRole('rowheader', { name, exact: true }) });
}

async function staffPasskey({ newPage }) {
  const { page, watch } = await newPage('staff back office');
  // On the page that runs the ceremonies: CDP sessions (and so authenticators) are per page.
  const authenticator = await addVirtualAuthenticator(page);
  await staffSignIn(page, watch);
  await page.getByRole('link', { name: 'My profile' }).click();
  await page.getByRole('heading', { level: 1, name: 'My profile' }).waitFor();
  await audit(page, watch, 'staff: my profile (no passkeys)');
  assert.match(await text(page), /You have no passkeys\./);

  await createPasskey(page, watch, STAFF, '/profile', 'Test laptop', STAFF_PASSWORD, 'staff');
  await page.getByRole('heading', { level: 1, name: 'My profile' }).waitFor();
  await audit(page, watch, 'staff: my profile (passkey added)');
  assert.match(await text(page), /Your passkey was added\./, 'the profile says the passkey was added');
  const row = passkeyRow(page, 'Test laptop');
  await row.waitFor();
  assert.match(await row.innerText(), /Not used yet/);
  assert.equal(await passkeyCount(authenticator), 1, 'the authenticator holds the new passkey');

  await page.getByRole('button', { name: 'Log out' }).click();
  await page.waitForURL(`${STAFF}/login`);
  await page.getByRole('heading', { level: 1, name: 'Staff sign in' }).waitFor();

  // Again, with the password and then the passkey instead of a code.
  await staffPassword(page, watch, ' (again)');
  const use = page.getByRole('button', { name: 'Use a passkey' });
  await use.waitFor();
  await audit(page, watch, 'staff: sign-in code with a passkey button');
  await use.click();
  await page.waitForURL(`${STAFF}/`);
  await page.getByRole('heading', { level: 1, name: 'Find a payment' }).waitFor();
  await audit(page, watch, 'staff: signed in with a passkey');

  await page.getByRole('link', { name: 'My profile' }).click();
  await page.getByRole('heading', { level: 1, name: 'My profile' }).waitFor();
  await audit(page, watch, 'staff: my profile (passkey used)');
  assert.doesNotMatch(await passkeyRow(page, 'Test laptop').innerText(), /Not used yet/, 'the passkey shows when it was last used');
  await financePages(page, watch);
  watch.assertClean();
}

/// At 320 CSS pixels wide the page itself never scrolls sideways (wide tables scroll in
/// their own container).
async function noSidewaysScroll(page, what) {
  await page.setViewportSize({ width: 320, height: 800 });
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  await page.setViewportSize({ width: 1280, height: 900 });
  assert.ok(wide <= 320, `${what} scrolls sideways at 320 px (${wide} px wide)`);
}

/// The finance pages of the back office (issue 6), in English and in Spanish: axe, and no
/// sideways scroll at 320 px. The server seeded an import, a payment, an exception and a
/// reconciled day (browser.rs).
async function financePages(page, watch) {
  for (const lang of ['en', 'es']) {
    const q = `?lang=${lang}`;
    const visit = async (path, what) => {
      await page.goto(`${STAFF}${path}${path.includes('?') ? q.replace('?', '&') : q}`);
      await audit(page, watch, `staff (${lang}): ${what}`);
      await noSidewaysScroll(page, `staff (${lang}): ${what}`);
    };
    await visit('/imports', 'bill imports');
    const imported = await page.locator('table a[href^="/imports/imp_"]').first().getAttribute('href');
    await visit(imported, 'one bill import');
    await visit('/postings', 'postings by business day');
    await visit(`/postings/${FINANCE_DAY}`, 'a business day and its settlement report');
    await visit('/reconciliation', 'reconciliation');
    await visit(`/reconciliation/${RECONCILED_DAY}`, 'a reconciled day');
    await visit('/exceptions', 'exceptions queue');
    const exception = await page.locator('table a[href^="/exceptions/exc_"]').first().getAttribute('href');
    await visit(exception, 'one exception');
    // The resolution form's errors, all at once, with the summary linking to the fields
    // (the 400 the browser logs for that answer is expected).
    watch.allowedConsole.push(/status of 400/);
    await page.getByRole('button', { name: lang === 'en' ? 'Resolve' : 'Resolver' }).click();
    await page.locator('#error-summary').waitFor();
    assert.equal(await page.locator('#error-summary a').count(), 2, 'both problems in the summary');
    assert.equal(await page.evaluate(() => document.activeElement && document.activeElement.id), 'error-summary', 'the summary takes focus');
    await audit(page, watch, `staff (${lang}): one exception with form errors`);
    watch.allowedConsole.pop();
    await noSidewaysScroll(page, `staff (${lang}): exception errors`);
    await visit('/refunds', 'refund approvals');
    await visit('/settings', 'settings (read by a supervisor)');
    await visit('/webhooks', 'event deliveries');
    await visit('/accounts?q=100001', 'account search results');
    await visit('/?q=100001', 'payment search results');
    await visit('/accounts/100001', 'an account with its payments');
    await visit('/', 'payments');
    const payment = await page.locator('a[href^="/payments/pay_"]').first().getAttribute('href');
    await visit(payment, 'one payment with its timeline');
    await visit('/outbox', 'email outbox');
  }
}

async function residentPasskey({ newPage }) {
  const { page, watch } = await newPage('resident');
  const authenticator = await addVirtualAuthenticator(page);
  const email = await registerResident(newPage, page, watch, 'passkey.resident');
  await residentPassword(page, watch, email, '');
  await page.waitForURL(`${PORTAL}/dashboard`);
  await page.getByRole('heading', { level: 1, name: 'My accounts' }).waitFor();
  await audit(page, watch, 'dashboard');

  await page.goto(`${PORTAL}/account/security`);
  await audit(page, watch, 'security (no passkeys)');
  assert.match(await text(page), /You have no passkeys\./);
  await createPasskey(page, watch, PORTAL, '/account', 'Test phone', RESIDENT_PASSWORD, 'resident');
  // The first second factor comes with recovery codes.
  await page.getByRole('heading', { level: 1, name: 'Save your recovery codes' }).waitFor();
  await audit(page, watch, 'security: recovery codes after the first passkey');
  const codes = await page.locator('#recovery-codes li').allInnerTexts();
  assert.ok(codes.length >= 5, `recovery codes are shown (got ${codes.length})`);
  for (const c of codes) assert.match(c.trim(), /^[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}$/, `a recovery code (got ${c})`);
  assert.equal(await passkeyCount(authenticator), 1, 'the authenticator holds the new passkey');
  await page.getByRole('link', { name: 'Continue' }).click();
  await page.waitForURL(`${PORTAL}/account/security`);
  await audit(page, watch, 'security (one passkey)');
  await passkeyRow(page, 'Test phone').waitFor();

  await page.getByRole('button', { name: 'Log out' }).click();
  await page.waitForURL(`${PORTAL}/`);
  await audit(page, watch, 'portal home (logged out)');
  await residentPassword(page, watch, email, ' (again)');
  await page.waitForURL(`${PORTAL}/login/mfa`);
  await page.getByRole('heading', { level: 1, name: 'Enter your sign-in code' }).waitFor();
  const use = page.getByRole('button', { name: 'Use a passkey' });
  await use.waitFor();
  await audit(page, watch, 'sign-in code with a passkey button');
  await use.click();
  await page.waitForURL(`${PORTAL}/dashboard`);
  await page.getByRole('heading', { level: 1, name: 'My accounts' }).waitFor();
  await audit(page, watch, 'dashboard (signed in with a passkey)');
  watch.assertClean();
}


// ---------------------------------------------------------------------------------------
// Permits, licences and the cart (issue 7). Run by their own server (browser.rs runs them
// with ONLY=services:): the residents are registered by the test, the licence was issued
// a year ago and the server's clock was then moved past its expiry.

const PERMIT_RESIDENT = env('PERMIT_RESIDENT', 'builder@example.com');
const SPANISH_RESIDENT = env('SPANISH_RESIDENT', 'constructor@example.com');
const LICENCE_RESIDENT = env('LICENCE_RESIDENT', 'owner@example.com');
const LICENCE_ID = env('LICENCE_ID', '');
const PDF = Buffer.from('%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n');

async function residentSignIn(page, watch, email) {
  await residentPassword(page, watch, email, '');
  await page.waitForURL(`${PORTAL}/dashboard`);
  await audit(page, watch, 'dashboard');
}

/// Chooses a USWDS radio button by its label's text (the input itself is drawn by its label).
async function chooseRadio(scope, label) {
  const escaped = label.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  await scope.locator('label.usa-radio__label').filter({ hasText: new RegExp(`^${escaped}`) }).first().click();
}

/// Audit, then check the page fits 320 px.
async function check(page, watch, what) {
  await audit(page, watch, what);
  await noSidewaysScroll(page, what);
}

/// The error summary took focus and links to each field named.
async function expectErrorSummary(page, fields) {
  const summary = page.locator('#error-summary');
  await summary.waitFor();
  // The page's script focuses the summary once it has loaded: wait for that (bounded),
  // not only for the element, which a loaded machine can show a moment earlier.
  await page
    .waitForFunction(() => document.activeElement && document.activeElement.id === 'error-summary', null, { timeout: 5000 })
    .catch(() => {});
  assert.equal(await page.evaluate(() => document.activeElement && document.activeElement.id), 'error-summary', 'the error summary takes focus');
  for (const f of fields) {
    assert.equal(await summary.locator(`a[href="#${f}"]`).count(), 1, `the summary links to #${f}`);
    assert.equal(await page.locator(`#${f}`).getAttribute('aria-invalid'), 'true', `#${f} is aria-invalid`);
  }
}

async function payOnHostedPage(page, watch, what) {
  await waitForOrigin(page, PROCESSOR);
  await page.getByLabel('Card number').waitFor();
  await audit(page, watch, `hosted card page (${what})`);
  await fillCard(page, GOOD_CARD);
  return expectReceipt(page, watch);
}

/// From the cart with everything checked: review (by department), pay by card.
async function payCart(page, watch, what, departments) {
  await page.goto(`${PORTAL}/cart`);
  await check(page, watch, `cart (${what})`);
  await page.getByRole('button', { name: 'Review and pay' }).click();
  await page.getByRole('heading', { level: 1, name: 'Review your payment' }).waitFor();
  await check(page, watch, `cart review (${what})`);
  const review = await text(page);
  for (const d of departments) assert.ok(review.includes(d), `the review names ${d}`);
  await page.getByRole('button', { name: 'Pay by card' }).click();
  const confirmation = await payOnHostedPage(page, watch, what);
  const receipt = await text(page);
  for (const d of departments) assert.ok(receipt.includes(d), `the receipt is itemised by department (${d})`);
  return confirmation;
}

/// Forms answered with their errors come with a 4xx status, which Chromium logs.
const FORM_ERRORS = /Failed to load resource: the server responded with a status of (400|422)/;

async function staffPage(newPage) {
  const staff = await newPage('staff back office');
  staff.watch.allowedConsole.push(FORM_ERRORS);
  await staffSignIn(staff.page, staff.watch);
  return staff;
}

async function permitJourney({ newPage }) {
  const { page, watch } = await newPage('permit applicant');
  watch.allowedConsole.push(FORM_ERRORS);
  await residentSignIn(page, watch, PERMIT_RESIDENT);
  await page.getByRole('link', { name: 'Permits', exact: true }).click();
  await page.getByRole('heading', { level: 1, name: 'Building permits' }).waitFor();
  await check(page, watch, 'permits (none)');
  await page.getByRole('link', { name: 'Apply for a permit' }).click();
  await page.getByRole('heading', { level: 1, name: 'Permit application' }).waitFor();
  await check(page, watch, 'permit application: details');
  // Sent empty: every problem at once, in a summary that takes focus.
  await page.getByRole('button', { name: 'Save and continue' }).click();
  await expectErrorSummary(page, ['permit_type', 'applicant_name', 'site_street', 'scope', 'valuation']);
  await check(page, watch, 'permit application: errors');
  await chooseRadio(page, 'Residential addition or alteration');
  await page.getByLabel('Your full name').fill('Pat Builder');
  await page.getByLabel('Phone number').fill('555-123-4567');
  await page.getByLabel('Street address of the property').fill('100 Main St');
  await page.getByLabel('ZIP code').fill('93301');
  await page.getByLabel('What will be built or changed').fill('Add a 200 sq ft bedroom at the back of the house');
  await page.getByLabel('Project value in dollars').fill('10000');
  await page.getByLabel('Area in square feet').fill('200');
  await page.getByLabel('Contractor license number').fill('CSLB-123456');
  await page.getByRole('button', { name: 'Save and continue' }).click();
  await page.getByRole('heading', { level: 1, name: 'Plans' }).waitFor();
  await check(page, watch, 'permit application: plans');
  await page.locator('#plan').setInputFiles({ name: 'site-plan.pdf', mimeType: 'application/pdf', buffer: PDF });
  await page.getByRole('button', { name: 'Upload' }).click();
  await page.getByRole('link', { name: 'site-plan.pdf' }).waitFor();
  await audit(page, watch, 'permit application: plan uploaded');
  await page.getByRole('link', { name: 'Continue to the fee estimate' }).click();
  await page.locator('#estimate-total').waitFor();
  await check(page, watch, 'permit application: fee estimate');
  assert.equal((await page.locator('#estimate-total').innerText()).trim(), '$299.06', 'the fee estimate before submitting');
  await page.getByRole('button', { name: 'Submit the application' }).click();
  await page.getByText('Your application was sent to the city.').waitFor();
  await audit(page, watch, 'permit: submitted');
  const permitUrl = page.url().split('?')[0];

  // A reviewer approves it.
  const staff = await staffPage(newPage);
  const s = staff.page;
  await s.goto(`${STAFF}/permit-reviews`);
  await check(s, staff.watch, 'staff: permit applications');
  await s.getByRole('link', { name: 'Residential addition or alteration' }).first().click();
  await s.getByRole('heading', { level: 1, name: 'Residential addition or alteration' }).waitFor();
  await check(s, staff.watch, 'staff: permit application');
  assert.ok((await text(s)).includes('site-plan.pdf'), 'the reviewer sees the plan');
  await chooseRadio(s, 'Approve and invoice the fees');
  await s.getByRole('button', { name: 'Record the decision' }).click();
  await s.getByRole('heading', { level: 1, name: 'Permit applications' }).waitFor();
  await audit(s, staff.watch, 'staff: permit applications (approved)');

  // The permit fee and the utility bill in one checkout.
  await page.goto(permitUrl);
  await check(page, watch, 'permit: approved, fees due');
  assert.equal((await page.locator('#permit-status').innerText()).trim(), 'Approved: fees due');
  await payCart(page, watch, 'permit fee and utility bill', ['Building and Safety', 'Utilities']);
  await page.goto(permitUrl);
  await audit(page, watch, 'permit: issued');
  assert.equal((await page.locator('#permit-status').innerText()).trim(), 'Issued');
  const number = (await page.getByRole('heading', { level: 1 }).innerText()).split(': ')[1];
  assert.match(number, /^BP-\d{4}-\d{5}$/, `a permit number (got ${number})`);
  await page.getByRole('link', { name: 'Print the permit' }).click();
  await page.locator('#permit-number').waitFor();
  await check(page, watch, 'permit: printable');

  // Inspection: requested, failed (a re-inspection fee), paid, requested again, passed.
  await page.goto(permitUrl);
  await page.getByLabel('Inspection', { exact: true }).selectOption('Foundation');
  await page.getByRole('button', { name: 'Request the inspection' }).click();
  await page.getByText('Your inspection is booked.').waitFor();
  await check(page, watch, 'permit: inspection booked');
  const record = async (result, note) => {
    await s.goto(`${STAFF}/inspections`);
    await check(s, staff.watch, `staff: inspections (${result})`);
    const section = s.locator('section').filter({ hasText: number }).first();
    await chooseRadio(section, result);
    if (note) await section.getByRole('textbox').fill(note);
    await section.getByRole('button', { name: 'Record the result' }).click();
  };
  await record('Failed', '');
  await expectErrorSummary(s, ['note']);
  await audit(s, staff.watch, 'staff: inspections (a failure needs a note)');
  await record('Failed', 'Footing 6 inches too shallow');
  await s.getByRole('heading', { level: 1, name: 'Inspections' }).waitFor();
  await page.goto(permitUrl);
  await page.getByLabel('Inspection', { exact: true }).selectOption('Foundation');
  await page.getByRole('button', { name: 'Request the inspection' }).click();
  await expectErrorSummary(page, ['inspection_type']);
  await check(page, watch, 'permit: re-inspection fee due');
  await payCart(page, watch, 're-inspection fee', ['Building and Safety']);
  await page.goto(permitUrl);
  await page.getByLabel('Inspection', { exact: true }).selectOption('Foundation');
  await page.getByRole('button', { name: 'Request the inspection' }).click();
  await page.getByText('Your inspection is booked.').waitFor();
  await record('Passed', 'Footing deepened; passes');
  await s.getByRole('heading', { level: 1, name: 'Inspections' }).waitFor();
  await page.goto(permitUrl);
  await audit(page, watch, 'permit: inspections recorded');
  assert.equal(await page.locator('#inspections tbody tr').count(), 2, 'two inspections');
  // (Both were recorded in the same second of the test's standing clock: in either order.)
  const inspections = await page.locator('#inspections tbody').innerText();
  assert.match(inspections, /Failed\s+Footing 6 inches too shallow/, 'the failed inspection with its note');
  assert.match(inspections, /Passed\s+Footing deepened; passes/, 'the re-inspection that passed');
  // The staff pages of permits, inspections and licences, in both languages.
  for (const lang of ['es', 'en']) {
    for (const [path, what] of [['/permit-reviews', 'permit applications'], ['/inspections', 'inspections'], ['/licences', 'licences']]) {
      await s.goto(`${STAFF}${path}?lang=${lang}`);
      await check(s, staff.watch, `staff: ${what} (${lang})`);
    }
  }
  staff.watch.assertClean();

  // Anyone can look the permit up by number and address; no personal data is shown.
  const anon = await newPage('public lookup');
  await anon.page.goto(`${PORTAL}/permit-lookup`);
  await check(anon.page, anon.watch, 'permit lookup');
  await anon.page.getByLabel('Permit number').fill(number);
  await anon.page.getByLabel('Street address or ZIP code').fill('93301');
  await anon.page.getByRole('button', { name: 'Look up' }).click();
  await anon.page.locator('#lookup-status').waitFor();
  await check(anon.page, anon.watch, 'permit lookup: found');
  const found = await text(anon.page);
  assert.ok(found.includes('Issued') && found.includes('Passed'), 'status and inspections');
  assert.ok(!found.includes('Pat Builder') && !found.includes('555-123'), 'no personal data');
  anon.watch.assertClean();
  watch.assertClean();
}

async function licenceJourney({ newPage }) {
  assert.ok(LICENCE_ID, 'LICENCE_ID is set');
  const { page, watch } = await newPage('licence owner');
  await residentSignIn(page, watch, LICENCE_RESIDENT);
  await page.getByRole('link', { name: 'Business licenses' }).click();
  await page.getByRole('heading', { level: 1, name: 'Business licenses' }).waitFor();
  await check(page, watch, 'licences');
  await page.getByRole('link', { name: "Pat's Pottery" }).click();
  await page.locator('#licence-status').waitFor();
  await check(page, watch, 'licence: expired');
  assert.equal((await page.locator('#licence-status').innerText()).trim(), 'Expired');
  await page.getByRole('link', { name: 'Renew the license' }).click();
  await page.getByRole('heading', { level: 1, name: 'Renew the license' }).waitFor();
  await check(page, watch, 'licence renewal: details carried forward');
  assert.equal(await page.getByLabel('Business name').inputValue(), "Pat's Pottery", 'the details are carried forward');
  await page.getByLabel('Number of employees').fill('2');
  await page.getByRole('button', { name: 'Show the fee' }).click();
  await page.locator('#quote-total').waitFor();
  await check(page, watch, 'licence renewal: fee with late penalty');
  // Expired 40 days ago: two started months, 10 % of $75.00 each (cap 25 %) = $15.00.
  const quote = await text(page);
  assert.ok(quote.includes('Late renewal penalty') && quote.includes('$15.00'), `the penalty is $15.00:\n${quote}`);
  assert.equal((await page.locator('#quote-total').innerText()).trim(), '$90.00');
  await page.getByRole('button', { name: 'Confirm and add to the cart' }).click();
  await page.getByRole('heading', { level: 1, name: 'Cart' }).waitFor();
  await payCart(page, watch, 'licence renewal', ['Business Licensing']);
  await page.goto(`${PORTAL}/licences/${LICENCE_ID}`);
  await page.locator('#licence-status').waitFor();
  await audit(page, watch, 'licence: renewed');
  assert.equal((await page.locator('#licence-status').innerText()).trim(), 'Current');
  await page.getByRole('link', { name: 'Business license certificate' }).click();
  await page.locator('#verification-code').waitFor();
  await check(page, watch, 'licence certificate');
  const verify = await page.locator('#verify-link').getAttribute('href');
  const anon = await newPage('certificate check');
  await anon.page.goto(verify);
  await anon.page.locator('#verify-result').waitFor();
  await check(anon.page, anon.watch, 'certificate check: current');
  assert.match(await text(anon.page), /This certificate is genuine and current\./);
  anon.watch.assertClean();
  watch.assertClean();
}

async function spanishPermitJourney({ newPage }) {
  const { page, watch } = await newPage('permit applicant (es)');
  watch.allowedConsole.push(FORM_ERRORS);
  await residentSignIn(page, watch, SPANISH_RESIDENT);
  await page.goto(`${PORTAL}/permits?lang=es`);
  await page.getByRole('heading', { level: 1, name: 'Permisos de construcción' }).waitFor();
  await check(page, watch, 'permisos (es)');
  await page.getByRole('link', { name: 'Solicitar un permiso' }).click();
  await page.getByRole('heading', { level: 1, name: 'Solicitud de permiso' }).waitFor();
  await page.getByRole('button', { name: 'Guardar y continuar' }).click();
  await expectErrorSummary(page, ['permit_type', 'applicant_name']);
  await check(page, watch, 'solicitud: errores (es)');
  assert.match(await text(page), /Elija un tipo de permiso\./, 'errors in Spanish');
  await chooseRadio(page, 'Cerca de más de 6 pies');
  await page.getByLabel('Su nombre completo').fill('Ana Constructora');
  await page.getByLabel('Número de teléfono').fill('555-987-6543');
  await page.getByLabel('Dirección de la propiedad').fill('200 Oak Ave');
  await page.getByLabel('Código postal').fill('93301');
  await page.getByLabel('Qué se va a construir o cambiar').fill('Cerca de 7 pies en el lado norte');
  await page.getByLabel('Valor del proyecto en dólares').fill('3000');
  await page.getByLabel('Área en pies cuadrados').fill('0');
  await page.getByRole('button', { name: 'Guardar y continuar' }).click();
  await page.getByRole('heading', { level: 1, name: 'Planos' }).waitFor();
  await check(page, watch, 'planos (es)');
  await page.locator('#plan').setInputFiles({ name: 'plano.pdf', mimeType: 'application/pdf', buffer: PDF });
  await page.getByRole('button', { name: 'Subir' }).click();
  await page.getByRole('link', { name: 'plano.pdf' }).waitFor();
  await page.getByRole('link', { name: 'Continuar al estimado de tarifas' }).click();
  await page.locator('#estimate-total').waitFor();
  await check(page, watch, 'estimado (es)');
  assert.equal((await page.locator('#estimate-total').innerText()).trim(), '$75.00');
  await page.getByRole('button', { name: 'Enviar la solicitud' }).click();
  await page.getByText('Su solicitud se envió a la ciudad.').waitFor();
  await check(page, watch, 'permiso enviado (es)');
  assert.equal((await page.locator('#permit-status').innerText()).trim(), 'En espera de revisión');
  // The other new pages, in both languages.
  for (const lang of ['es', 'en']) {
    for (const [path, what] of [['/licences', 'licences'], ['/licences/new', 'licence application'], ['/cart', 'cart'], ['/licence-check', 'certificate check'], ['/permit-lookup', 'permit lookup'], ['/pay-fees', 'guest fees'], ['/', 'home']]) {
      await page.goto(`${PORTAL}${path}?lang=${lang}`);
      await check(page, watch, `${what} (${lang})`);
    }
  }
  // A licence application sent empty, in Spanish.
  await page.goto(`${PORTAL}/licences/new?lang=es`);
  await page.getByRole('button', { name: 'Solicitar' }).click();
  await expectErrorSummary(page, ['licence_type', 'business_name']);
  await check(page, watch, 'solicitud de licencia: errores (es)');
  await page.goto(`${PORTAL}/dashboard?lang=en`);
  await audit(page, watch, 'dashboard (back in English)');
  watch.assertClean();
}

const JOURNEYS = [
  ['quick pay with a declined card, then cancel', declinedCard],
  ['quick pay with a good card', quickPay],
  ['resident: register, verify, link two accounts, pay both', resident],
  ['staff: add a passkey, sign out, sign in with it', staffPasskey],
  ['resident: add a passkey, get recovery codes, sign in with it', residentPasskey],
  ['services: apply for a permit, review, pay with a bill, issue, inspect, look up', permitJourney],
  ['services: renew an expired business licence, pay the penalty, check the certificate', licenceJourney],
  ['services: apply for a permit in Spanish; every new page in both languages', spanishPermitJourney],
];

// ---------------------------------------------------------------------------------------

async function main() {
  const started = Date.now();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  console.log(`chromium ${browser.version()}; portal ${PORTAL}, staff ${STAFF}, processor ${PROCESSOR}`);
  let passed = 0;
  let failed = 0;
  try {
    for (const [name, run] of JOURNEYS) {
      // The services journeys need their own server (browser.rs runs them with ONLY=services:).
      if (ONLY ? !name.includes(ONLY) : name.startsWith('services:')) continue;
      const t0 = Date.now();
      const contexts = [];
      const pages = [];
      const newPage = async (label) => {
        const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US' });
        context.setDefaultTimeout(15000);
        contexts.push(context);
        const page = await context.newPage();
        const watch = new Watch(label);
        watch.attach(page);
        pages.push([label, page]);
        return { page, watch };
      };
      console.log(`journey: ${name}`);
      try {
        await run({ newPage });
        passed += 1;
        console.log(`PASS ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      } catch (e) {
        failed += 1;
        console.log(`FAIL ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)\n${e && e.stack ? e.stack : e}`);
        mkdirSync(FAILURE_DIR, { recursive: true });
        for (const [label, page] of pages) {
          const file = path.join(FAILURE_DIR, `${name}-${label}.png`.replace(/[^\w.-]+/g, '_'));
          try {
            await page.screenshot({ path: file, fullPage: true });
            console.log(`  at ${page.url()}; screenshot ${file}`);
          } catch {
            // the page may be gone
          }
        }
      } finally {
        for (const c of contexts) await c.close().catch(() => {});
      }
    }
  } finally {
    await browser.close();
  }
  console.log(`browser journeys took ${((Date.now() - started) / 1000).toFixed(1)} s`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed === 0 && passed > 0 ? 0 : 1;
}

main().catch((e) => {
  console.log(`journeys crashed: ${e && e.stack ? e.stack : e}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
});
