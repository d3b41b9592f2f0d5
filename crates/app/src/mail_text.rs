//! The words of the emails residents receive, in their language (`en`, `es`). The use
//! cases fill in the facts; this module holds only text, so a language is added here.

/// A language emails are written in; anything unknown reads as English.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Es,
}

impl Lang {
    pub fn parse(s: &str) -> Lang {
        if s.eq_ignore_ascii_case("es") {
            Lang::Es
        } else {
            Lang::En
        }
    }
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Es => "es",
        }
    }
}

/// (subject, body) of the address-confirmation email.
pub fn verify(lang: Lang, city: &str, link: &str) -> (String, String) {
    match lang {
        Lang::En => (
            "Confirm your email address".into(),
            format!("Welcome to {city} online payments.\n\nConfirm your email address by opening this link within 24 hours:\n{link}\n\nIf you did not create this account, ignore this email.\n"),
        ),
        Lang::Es => (
            "Confirme su correo electrónico".into(),
            format!("Bienvenido a los pagos en línea de {city}.\n\nConfirme su correo electrónico abriendo este enlace en las próximas 24 horas:\n{link}\n\nSi usted no creó esta cuenta, ignore este correo.\n"),
        ),
    }
}

/// (subject, body) of the email to an address that already has an account.
pub fn account_exists(lang: Lang, city: &str, forgot: &str) -> (String, String) {
    match lang {
        Lang::En => (
            "You already have an account".into(),
            format!("Someone tried to create a {city} payments account with this email address, which already has one.\n\nIf it was you, log in or reset your password at {forgot}.\nIf it was not you, you can ignore this email.\n"),
        ),
        Lang::Es => (
            "Usted ya tiene una cuenta".into(),
            format!("Alguien intentó crear una cuenta de pagos de {city} con este correo electrónico, que ya tiene una.\n\nSi fue usted, inicie sesión o restablezca su contraseña en {forgot}.\nSi no fue usted, puede ignorar este correo.\n"),
        ),
    }
}

/// (subject, body) of the password-reset email.
pub fn reset(lang: Lang, city: &str, link: &str) -> (String, String) {
    match lang {
        Lang::En => (
            "Reset your password".into(),
            format!("Someone asked to reset the password of your {city} payments account.\n\nTo choose a new password, open this link within one hour (it works once):\n{link}\n\nIf you did not ask, ignore this email; your password has not changed.\n"),
        ),
        Lang::Es => (
            "Restablezca su contraseña".into(),
            format!("Alguien pidió restablecer la contraseña de su cuenta de pagos de {city}.\n\nPara elegir una contraseña nueva, abra este enlace en la próxima hora (funciona una sola vez):\n{link}\n\nSi usted no lo pidió, ignore este correo; su contraseña no cambió.\n"),
        ),
    }
}

/// The words of a receipt; the facts are filled in by `App::enqueue_receipt`.
pub struct Receipt {
    pub subject: &'static str,
    pub thanks: &'static str,
    pub confirmation: &'static str,
    pub amount: &'static str,
    pub card: &'static str,
    pub ending_in: &'static str,
    pub applied_to: &'static str,
    pub utility_account: &'static str,
    pub permit_fees: &'static str,
    pub licence_fees: &'static str,
    pub card_fee: &'static str,
    pub view: &'static str,
    pub keep: &'static str,
}

pub fn receipt(lang: Lang) -> Receipt {
    match lang {
        Lang::En => Receipt {
            subject: "Payment receipt",
            thanks: "Thank you. {city} received your payment.",
            confirmation: "Confirmation number",
            amount: "Amount paid",
            card: "Card",
            ending_in: "ending in",
            applied_to: "Applied to",
            utility_account: "Utility account",
            permit_fees: "Permit fees, invoice",
            licence_fees: "Business license fees, invoice",
            card_fee: "Card convenience fee",
            view: "View your receipt",
            keep: "Keep this email for your records.",
        },
        Lang::Es => Receipt {
            subject: "Recibo de pago",
            thanks: "Gracias. {city} recibió su pago.",
            confirmation: "Número de confirmación",
            amount: "Monto pagado",
            card: "Tarjeta",
            ending_in: "terminada en",
            applied_to: "Aplicado a",
            utility_account: "Cuenta de servicios",
            permit_fees: "Tarifas de permiso, factura",
            licence_fees: "Tarifas de licencia comercial, factura",
            card_fee: "Cargo por conveniencia con tarjeta",
            view: "Vea su recibo",
            keep: "Guarde este correo para sus registros.",
        },
    }
}

/// The department an item type's money goes to, as people name it.
pub fn department(lang: Lang, item_type: &str) -> &'static str {
    match (lang, item_type) {
        (Lang::En, "utility") => "Utilities",
        (Lang::En, "permit") => "Building and Safety",
        (Lang::En, "licence") => "Business Licensing",
        (Lang::En, _) => "Finance",
        (Lang::Es, "utility") => "Servicios públicos",
        (Lang::Es, "permit") => "Construcción y Seguridad",
        (Lang::Es, "licence") => "Licencias Comerciales",
        (Lang::Es, _) => "Finanzas",
    }
}
