//! [`redact_url`]: a database or service URL fit for logs, errors and
//! `Debug`.

/// `url` fit to print: the password of its user information and the value
/// of every `…password` parameter replaced by `***`, the rest kept so that
/// an operator still sees which database is meant.
///
/// ```
/// use sage_stream::redact_url;
///
/// assert_eq!(redact_url("postgres://app:s3cret@db:5432/log"), "postgres://app:***@db:5432/log");
/// assert_eq!(redact_url("postgres://db/log?user=app&password=s3cret"), "postgres://db/log?user=app&password=***");
/// assert_eq!(redact_url("sqlite://sage_stream.db"), "sqlite://sage_stream.db");
/// ```
pub fn redact_url(url: &str) -> String {
    let (head, query) = match url.find(['?', '#']) {
        Some(at) => url.split_at(at),
        None => (url, ""),
    };
    let mut out = String::with_capacity(url.len());
    match head.split_once("://") {
        Some((scheme, rest)) => {
            out.push_str(scheme);
            out.push_str("://");
            // The last `@` ends the user information: a password written
            // unencoded may hold `/` or `@` itself.
            match rest.rsplit_once('@') {
                Some((userinfo, host)) => {
                    match userinfo.split_once(':') {
                        Some((user, _)) => {
                            out.push_str(user);
                            out.push_str(":***");
                        }
                        None => out.push_str(userinfo),
                    }
                    out.push('@');
                    out.push_str(host);
                }
                None => out.push_str(rest),
            }
        }
        // Not a URL (a libpq `key=value` string?): its words are parameters.
        None => {
            let words: Vec<String> = head.split(' ').map(redact_parameter).collect();
            out.push_str(&words.join(" "));
        }
    }
    if let Some(first) = query.chars().next() {
        out.push(first);
        let parameters: Vec<String> = query[1..].split('&').map(redact_parameter).collect();
        out.push_str(&parameters.join("&"));
    }
    out
}

/// `key=value` with the value hidden when the key names a password.
fn redact_parameter(parameter: &str) -> String {
    match parameter.split_once('=') {
        Some((key, _)) if key.to_ascii_lowercase().ends_with("password") => format!("{key}=***"),
        _ => parameter.to_owned(),
    }
}

/// What `Debug` shows in place of a secret.
pub(crate) const HIDDEN: &str = "***";

/// An optional secret as `Debug` shows it: `Some("***")` or `None`.
pub(crate) fn hidden<T>(secret: &Option<T>) -> Option<&'static str> {
    secret.as_ref().map(|_| HIDDEN)
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_hidden_and_the_rest_kept() {
        for (url, shown) in [
            ("postgres://u:pw@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://u:p/w@d@h/db", "postgres://u:***@h/db"),
            (
                "postgresql://h/db?user=u&password=pw&sslmode=require",
                "postgresql://h/db?user=u&password=***&sslmode=require",
            ),
            (
                "postgres://h/db?sslpassword=pw",
                "postgres://h/db?sslpassword=***",
            ),
            (
                "host=h password=pw dbname=db",
                "host=h password=*** dbname=db",
            ),
            (
                "sqlite:///var/lib/sage/log.db",
                "sqlite:///var/lib/sage/log.db",
            ),
            (
                "https://django:pw@auth.example/check?x=1",
                "https://django:***@auth.example/check?x=1",
            ),
            ("", ""),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
