//! `infra user create|delete`: users of the stack's Cognito user pool, plus what `token`,
//! `cache` and `smoke` share: the stack's outputs read from the state, the password on stdin.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal};

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_cognitoidentityprovider::types::{AttributeType, MessageActionType};
use rand::seq::{IndexedRandom, SliceRandom};

use super::state_location;
use crate::aws::{aws_error, Aws};
use crate::cli::{Cli, UserCommand};
use crate::config::Settings;
use crate::resources::identity::user_pool::PasswordPolicy;
use crate::resources::Ctx;
use crate::state::Location;

pub async fn run(cli: &Cli, settings: &Settings, command: &UserCommand) -> Result<u8> {
    match command {
        UserCommand::Create { email } => create(cli, settings, email).await,
        UserCommand::Delete { email } => delete(cli, settings, email).await,
    }
}

async fn create(cli: &Cli, settings: &Settings, email: &str) -> Result<u8> {
    validate_email(email).map_err(|rule| anyhow!("{email:?} is not an email address: {rule}"))?;
    let policy = PasswordPolicy::strong();
    // Everything the user can get wrong is checked before the first AWS call.
    let (password, generated) = match password_from_stdin()? {
        Some(password) => {
            validate_password(&password, &policy).map_err(|rule| anyhow!("the password on stdin does not meet the user pool's policy: {rule}"))?;
            (password, false)
        }
        None => (generate_password(&policy), true),
    };
    let (ctx, outputs) = connect(cli, settings).await?;
    let pool = outputs.require("UserPoolId")?;
    create_user(&ctx, pool, email, &password).await?;
    println!("created user {email} in user pool {pool}");
    if generated {
        println!("password: {password}");
        println!("(generated; shown only this once: infra does not store it)");
    }
    Ok(0)
}

async fn delete(cli: &Cli, settings: &Settings, email: &str) -> Result<u8> {
    let (ctx, outputs) = connect(cli, settings).await?;
    let pool = outputs.require("UserPoolId")?;
    if delete_user(&ctx, pool, email).await? {
        println!("deleted user {email} from user pool {pool}");
    } else {
        println!("user {email} does not exist in user pool {pool}: nothing to delete");
    }
    Ok(0)
}

/// AdminCreateUser (no invitation message: the password is set right after) then
/// AdminSetUserPassword as permanent, so the user can sign in at once without the
/// NEW_PASSWORD_REQUIRED challenge. A user left without a permanent password is removed.
pub(super) async fn create_user(ctx: &Ctx, pool: &str, email: &str, password: &str) -> Result<()> {
    let attribute = |name: &str, value: &str| AttributeType::builder().name(name).value(value).build().expect("name is set");
    let created = ctx
        .cognito()
        .await
        .admin_create_user()
        .user_pool_id(pool)
        .username(email)
        .message_action(MessageActionType::Suppress)
        .user_attributes(attribute("email", email))
        .user_attributes(attribute("email_verified", "true"))
        .send()
        .await;
    if let Err(e) = created {
        if e.as_service_error().is_some_and(|s| s.is_username_exists_exception()) {
            bail!("user {email} already exists in user pool {pool} (`infra user delete {email}` first to give it a new password)");
        }
        return Err(aws_error("AdminCreateUser", format!("user {email} in {pool}"), e).into());
    }
    let set = ctx.cognito().await.admin_set_user_password().user_pool_id(pool).username(email).password(password).permanent(true).send().await;
    if let Err(e) = set {
        let error = if e.as_service_error().is_some_and(|s| s.is_invalid_password_exception()) {
            // The pool's policy may be stricter than the one checked locally (changed out of band).
            anyhow!("the user pool rejected the password: {}", e.as_service_error().and_then(|s| s.meta().message()).unwrap_or("(no reason given)"))
        } else {
            aws_error("AdminSetUserPassword", format!("user {email} in {pool}"), e).into()
        };
        // Without a permanent password the user could only sign in through a challenge;
        // removing it lets the same `user create` simply be run again.
        return match delete_user(ctx, pool, email).await {
            Ok(_) => Err(error.context(format!("setting the password of user {email} (the user was removed again)"))),
            Err(cleanup) => Err(error.context(format!(
                "setting the password of user {email}; removing the half-created user failed too ({cleanup:#}): run `infra user delete {email}`"
            ))),
        };
    }
    Ok(())
}

/// AdminDeleteUser; `false` when there was no such user (deleting is idempotent).
pub(super) async fn delete_user(ctx: &Ctx, pool: &str, email: &str) -> Result<bool> {
    match ctx.cognito().await.admin_delete_user().user_pool_id(pool).username(email).send().await {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_user_not_found_exception()) => Ok(false),
        Err(e) => Err(aws_error("AdminDeleteUser", format!("user {email} in {pool}"), e).into()),
    }
}

/// The stack's outputs as recorded in its state, read without taking the lock (as
/// `infra outputs` does).
pub(super) struct StackOutputs {
    stack: String,
    values: BTreeMap<&'static str, String>,
}

impl StackOutputs {
    /// The output `key`, or an error telling to run `infra up`.
    pub fn require(&self, key: &str) -> Result<&str> {
        self.get(key).ok_or_else(|| anyhow!("no {key} in the state of stack {:?}; run `infra up` first", self.stack))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }
}

pub(super) async fn read_outputs(cli: &Cli, settings: &Settings, aws: &Aws) -> Result<StackOutputs> {
    let location = state_location(cli, settings);
    let stack = &settings.config.stack;
    let Some((state, _)) = crate::state::read(&location, stack, Some(aws)).await? else {
        let at = match &location {
            Location::S3(url) => url.state_url(stack),
            Location::Local(dir) => crate::state::local_state_path(dir, stack).display().to_string(),
        };
        bail!("no state for stack {stack:?} at {at}; run `infra up` first");
    };
    let values = super::outputs::outputs(&state);
    Ok(StackOutputs { stack: stack.clone(), values })
}

/// AWS clients and the stack's outputs.
pub(super) async fn connect(cli: &Cli, settings: &Settings) -> Result<(Ctx, StackOutputs)> {
    let aws = Aws::connect(settings.config.region.as_deref()).await?;
    let outputs = read_outputs(cli, settings, &aws).await?;
    Ok((Ctx { aws, stack: settings.config.stack.clone() }, outputs))
}

/// The first line of stdin, trimmed, when stdin is not a terminal; `None` when it is a
/// terminal or closed without a line (`</dev/null`). An empty line is an error: the caller
/// meant to pass a password.
pub(super) fn password_from_stdin() -> Result<Option<String>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(None);
    }
    let mut line = String::new();
    if stdin.lock().read_line(&mut line).context("reading the password from stdin")? == 0 {
        return Ok(None);
    }
    let password = line.trim().to_string();
    if password.is_empty() {
        bail!("the password on stdin is empty");
    }
    Ok(Some(password))
}

/// The special characters Cognito counts as symbols in a password policy.
pub(super) const COGNITO_SYMBOLS: &str = "^$*.[]{}()?\"!@#%&/\\,><':;|_~`=+- ";

/// Checks an email's shape (not its deliverability); names the rule broken.
pub(super) fn validate_email(email: &str) -> std::result::Result<(), String> {
    if email.len() > 254 {
        return Err("longer than 254 characters".into());
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace".into());
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err("no @".into());
    };
    if local.is_empty() {
        return Err("nothing before the @".into());
    }
    if local.contains('@') {
        return Err("more than one @".into());
    }
    if !domain.contains('.') {
        return Err(format!("domain {domain:?} has no dot"));
    }
    if domain.split('.').any(str::is_empty) {
        return Err(format!("domain {domain:?} has an empty label"));
    }
    Ok(())
}

/// Checks a password against the user pool's policy as Cognito does; names the rule broken.
pub(super) fn validate_password(password: &str, policy: &PasswordPolicy) -> std::result::Result<(), String> {
    let length = password.chars().count();
    if length < policy.minimum_length as usize {
        return Err(format!("at least {} characters are required, it has {length}", policy.minimum_length));
    }
    if length > 256 {
        return Err(format!("at most 256 characters are allowed, it has {length}"));
    }
    if password.starts_with(char::is_whitespace) || password.ends_with(char::is_whitespace) {
        return Err("it must not begin or end with a space".into());
    }
    let rules: [(bool, fn(char) -> bool, &str); 4] = [
        (policy.require_uppercase, |c| c.is_ascii_uppercase(), "an uppercase letter (A-Z) is required"),
        (policy.require_lowercase, |c| c.is_ascii_lowercase(), "a lowercase letter (a-z) is required"),
        (policy.require_numbers, |c| c.is_ascii_digit(), "a digit (0-9) is required"),
        (policy.require_symbols, |c| COGNITO_SYMBOLS.contains(c), "a symbol (one of ^$*.[]{}()?\"!@#%&/\\,><':;|_~`=+-) is required"),
    ];
    for (required, class, rule) in rules {
        if required && !password.chars().any(class) {
            return Err(rule.into());
        }
    }
    Ok(())
}

/// A random password meeting `policy`: 20 characters (at least the minimum), one of each
/// class, from the OS-seeded CSPRNG. Symbols that shells and URLs treat specially are left
/// out so the password can be pasted as it is.
pub(super) fn generate_password(policy: &PasswordPolicy) -> String {
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
    const DIGITS: &[u8] = b"23456789";
    const SYMBOLS: &[u8] = b"-_.,:+=@%^";
    let all: Vec<u8> = [UPPER, LOWER, DIGITS, SYMBOLS].concat();
    let length = (policy.minimum_length.max(0) as usize).max(20);
    let mut rng = rand::rng();
    let mut chars: Vec<u8> = [UPPER, LOWER, DIGITS, SYMBOLS].iter().map(|class| *class.choose(&mut rng).expect("non-empty")).collect();
    while chars.len() < length {
        chars.push(*all.choose(&mut rng).expect("non-empty"));
    }
    chars.shuffle(&mut rng);
    String::from_utf8(chars).expect("ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_shapes_name_the_rule_broken() {
        assert_eq!(validate_email("a@example.com"), Ok(()));
        assert_eq!(validate_email("first.last+tag@sub.example.org"), Ok(()));
        assert_eq!(validate_email("example.com"), Err("no @".into()));
        assert_eq!(validate_email("@example.com"), Err("nothing before the @".into()));
        assert_eq!(validate_email("a@b@example.com"), Err("more than one @".into()));
        assert_eq!(validate_email("a@localhost"), Err("domain \"localhost\" has no dot".into()));
        assert_eq!(validate_email("a@example..com"), Err("domain \"example..com\" has an empty label".into()));
        assert_eq!(validate_email("a b@example.com"), Err("contains whitespace".into()));
    }

    #[test]
    fn password_policy_names_the_rule_broken() {
        let p = PasswordPolicy::strong();
        assert_eq!(validate_password("Abcdefghij1!", &p), Ok(()));
        assert!(validate_password("Abcdefgh1!", &p).unwrap_err().contains("at least 12 characters"));
        assert!(validate_password("abcdefghij1!", &p).unwrap_err().contains("uppercase"));
        assert!(validate_password("ABCDEFGHIJ1!", &p).unwrap_err().contains("lowercase"));
        assert!(validate_password("Abcdefghijk!", &p).unwrap_err().contains("digit"));
        assert!(validate_password("Abcdefghijk1", &p).unwrap_err().contains("symbol"));
        assert!(validate_password(&"Aa1!".repeat(65), &p).unwrap_err().contains("at most 256"));
    }

    #[test]
    fn generated_passwords_meet_the_policy_and_differ() {
        let p = PasswordPolicy::strong();
        let a = generate_password(&p);
        for _ in 0..200 {
            let pw = generate_password(&p);
            assert_eq!(validate_password(&pw, &p), Ok(()), "{pw}");
            assert_eq!(pw.len(), 20);
        }
        assert_ne!(a, generate_password(&p));
    }
}
