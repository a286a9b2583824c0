//! The web page: one static HTML page, its script and its style sheet (in `crates/api/web/`,
//! compiled into the binary), and `/config.json`, which tells the same files how to sign in where
//! they are served. Each host merges [`router`] beside the API's router: the local runner with
//! [`SignIn::Local`], `messages-api` in Lambda with [`SignIn::Cognito`]. The page calls the API on
//! its own origin, so the API needs no CORS for it.
//!
//! Every answer carries a Content-Security-Policy that allows scripts, styles and connections from
//! the page's own origin and the few others it names (the bucket's links, Cognito), and nothing
//! inline: a message's text can never run as script.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use transcoder_core::{ConfigError, Env};

const INDEX_HTML: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const STYLE_CSS: &str = include_str!("../web/style.css");

/// The page's routes, all `GET` (and `HEAD`), none behind an authorizer: the page is the same for
/// everyone and holds no data; the data comes from the API, which needs a signed-in caller.
pub const ROUTES: &[&str] = &["/", "/app.js", "/style.css", "/config.json"];

/// How the page signs its user in, as `/config.json` tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "sign_in", rename_all = "snake_case")]
pub enum SignIn {
    /// On one machine: the user types a name, which the page sends as `X-User`. There is no
    /// authentication; the page says so. `origin` is where the runner's links point: a page
    /// opened under another name of this machine (`localhost` for `127.0.0.1`) moves there, so
    /// that its uploads and downloads stay on its own origin.
    Local { origin: String },
    /// With the stack's Cognito user pool: the page sends the user's name and password to
    /// Cognito's own endpoint (never to our functions) and calls the API with the access token.
    Cognito { endpoint: String, client_id: String },
}

/// What the page needs to know of its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageConfig {
    pub sign_in: SignIn,
    /// Origins other than the page's own that it sends requests to: the bucket its links point
    /// into, and Cognito.
    pub connect: Vec<String>,
    /// Origins other than the page's own that it plays audio from: the bucket.
    pub media: Vec<String>,
}

impl PageConfig {
    /// Every variable [`PageConfig::cognito_from_env`] reads.
    pub const VARIABLES: &[&str] = &["COGNITO_URL", "USER_POOL_CLIENT_ID", "BUCKET_URL"];

    /// The page on one machine, whose links point at `origin` (`http://127.0.0.1:3000`).
    pub fn local(origin: &str) -> Self {
        Self {
            sign_in: SignIn::Local {
                origin: origin.to_owned(),
            },
            connect: vec![origin.to_owned()],
            media: vec![origin.to_owned()],
        }
    }

    /// The page in the stack: Cognito's endpoint (`COGNITO_URL`) and the app client
    /// (`USER_POOL_CLIENT_ID`) to sign in with, and the bucket's origin (`BUCKET_URL`) that
    /// upload and download links point at.
    pub fn cognito_from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let endpoint = origin(env, "COGNITO_URL")?;
        let bucket = origin(env, "BUCKET_URL")?;
        let client_id = env
            .get("USER_POOL_CLIENT_ID")
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .ok_or(ConfigError::Missing {
                name: "USER_POOL_CLIENT_ID",
            })?;
        if !client_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ConfigError::invalid(
                "USER_POOL_CLIENT_ID",
                &client_id,
                "a Cognito app client id has only letters and digits",
            ));
        }
        Ok(Self {
            sign_in: SignIn::Cognito {
                endpoint: format!("{endpoint}/"),
                client_id,
            },
            connect: vec![bucket.clone(), endpoint],
            media: vec![bucket],
        })
    }

    /// The Content-Security-Policy of every answer: nothing inline, nothing from elsewhere but
    /// the origins it names, and never inside another site's frame.
    pub fn content_security_policy(&self) -> String {
        let list =
            |origins: &[String]| -> String { origins.iter().map(|o| format!(" {o}")).collect() };
        format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'{}; media-src 'self'{}; form-action 'self'; base-uri 'none'; \
             frame-ancestors 'none'",
            list(&self.connect),
            list(&self.media)
        )
    }
}

/// An origin from the environment: `https://host` (or `http://` for loopback), no path.
fn origin(env: &impl Env, name: &'static str) -> Result<String, ConfigError> {
    let value = env
        .get(name)
        .map(|v| v.trim().trim_end_matches('/').to_owned())
        .filter(|v| !v.is_empty())
        .ok_or(ConfigError::Missing { name })?;
    let host = value.strip_prefix("https://").unwrap_or_default();
    let plain = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':');
    if plain {
        Ok(value)
    } else {
        Err(ConfigError::invalid(
            name,
            &value,
            "must be an https:// origin, such as https://cognito-idp.eu-west-1.amazonaws.com",
        ))
    }
}

/// `GET /`, `/app.js`, `/style.css` and `/config.json`, each with the security headers.
pub fn router(config: &PageConfig) -> Router {
    let headers = security_headers(config);
    let config_json = serde_json::to_string(&config.sign_in).unwrap_or_default();
    let file = move |content_type: &'static str, body: String| {
        let headers = headers.clone();
        get(move || async move { answer(&headers, content_type, body) })
    };
    Router::new()
        .route("/", file("text/html; charset=utf-8", INDEX_HTML.into()))
        .route(
            "/app.js",
            file("text/javascript; charset=utf-8", APP_JS.into()),
        )
        .route(
            "/style.css",
            file("text/css; charset=utf-8", STYLE_CSS.into()),
        )
        .route("/config.json", file("application/json", config_json))
}

type Headers = Vec<(HeaderName, HeaderValue)>;

fn security_headers(config: &PageConfig) -> Headers {
    let csp = config.content_security_policy();
    let mut headers: Headers = [
        (header::CONTENT_SECURITY_POLICY, csp.as_str()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("permissions-policy"),
            "camera=(), microphone=(), geolocation=(), payment=()",
        ),
        // Small files: always revalidated, so a new version is seen at the next load.
        (header::CACHE_CONTROL, "no-cache"),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, HeaderValue::from_str(value).ok()?)))
    .collect();
    if matches!(config.sign_in, SignIn::Cognito { .. }) {
        // Served over HTTPS by API Gateway; never over plain HTTP again.
        headers.push((
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ));
    }
    headers
}

fn answer(headers: &Headers, content_type: &'static str, body: String) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    response.headers_mut().extend(headers.iter().cloned());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn get(config: &PageConfig, path: &str) -> Response {
        let request = axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap();
        router(config).oneshot(request).await.unwrap()
    }

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    /// Variables, as many as a test needs.
    struct Vars(Vec<(&'static str, &'static str)>);

    impl Env for Vars {
        fn get(&self, name: &str) -> Option<String> {
            self.0
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn cognito() -> PageConfig {
        PageConfig::cognito_from_env(&[
            ("COGNITO_URL", "https://cognito-idp.eu-west-1.amazonaws.com"),
            ("USER_POOL_CLIENT_ID", "4example0client0id"),
            (
                "BUCKET_URL",
                "https://media-abc.s3.eu-west-1.amazonaws.com/",
            ),
        ])
        .unwrap()
    }

    #[tokio::test]
    async fn every_file_is_served_with_its_type_and_the_security_headers() {
        let config = PageConfig::local("http://127.0.0.1:3000");
        for (path, content_type) in [
            ("/", "text/html; charset=utf-8"),
            ("/app.js", "text/javascript; charset=utf-8"),
            ("/style.css", "text/css; charset=utf-8"),
            ("/config.json", "application/json"),
        ] {
            assert!(ROUTES.contains(&path));
            let response = get(&config, path).await;
            assert_eq!(response.status(), 200, "{path}");
            let h = response.headers();
            assert_eq!(h["content-type"], content_type, "{path}");
            assert_eq!(h["x-content-type-options"], "nosniff");
            assert_eq!(h["referrer-policy"], "no-referrer");
            assert_eq!(h["x-frame-options"], "DENY");
            assert!(h.get("strict-transport-security").is_none());
            let csp = h["content-security-policy"].to_str().unwrap();
            assert!(csp.contains("script-src 'self';"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert!(!csp.contains("unsafe"), "{csp}");
        }
        assert_eq!(
            body(get(&config, "/config.json").await).await,
            r#"{"sign_in":"local","origin":"http://127.0.0.1:3000"}"#
        );
        assert_eq!(get(&config, "/index.html").await.status(), 404);
    }

    #[tokio::test]
    async fn the_page_has_no_inline_script_or_style() {
        let html = body(get(&PageConfig::local("http://x"), "/").await).await;
        assert!(html.contains(r#"<script src="/app.js" defer></script>"#));
        assert_eq!(html.matches("<script").count(), 1, "{html}");
        assert!(!html.contains("style="), "inline style in the page");
        let handler = html.split([' ', '\n', '\t']).find(|word| {
            word.strip_prefix("on").is_some_and(|rest| {
                rest.split_once('=').is_some_and(|(name, _)| {
                    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphabetic())
                })
            })
        });
        assert_eq!(handler, None, "an inline event handler in the page");
    }

    #[tokio::test]
    async fn in_the_stack_the_page_signs_in_with_cognito_and_connects_only_to_its_origins() {
        let config = cognito();
        let response = get(&config, "/config.json").await;
        assert_eq!(
            response.headers()["strict-transport-security"],
            "max-age=31536000"
        );
        assert_eq!(
            response.headers()["content-security-policy"],
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self' https://media-abc.s3.eu-west-1.amazonaws.com \
             https://cognito-idp.eu-west-1.amazonaws.com; media-src 'self' \
             https://media-abc.s3.eu-west-1.amazonaws.com; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        );
        assert_eq!(
            body(response).await,
            r#"{"sign_in":"cognito","endpoint":"https://cognito-idp.eu-west-1.amazonaws.com/","client_id":"4example0client0id"}"#
        );
    }

    #[test]
    fn a_cognito_configuration_is_refused_with_the_variable_it_lacks() {
        let refused = |env: &[(&'static str, &'static str)]| {
            PageConfig::cognito_from_env(&Vars(env.to_vec())).unwrap_err()
        };
        let full = [
            ("COGNITO_URL", "https://cognito-idp.eu-west-1.amazonaws.com"),
            ("USER_POOL_CLIENT_ID", "abc123"),
            ("BUCKET_URL", "https://b.s3.eu-west-1.amazonaws.com"),
        ];
        for (i, (name, _)) in full.iter().enumerate() {
            let mut env = full.to_vec();
            env.remove(i);
            assert_eq!(refused(&env), ConfigError::Missing { name }, "{name}");
        }
        for (name, bad) in [
            ("COGNITO_URL", "http://cognito-idp.eu-west-1.amazonaws.com"),
            ("BUCKET_URL", "https://b.s3.amazonaws.com/path"),
            ("BUCKET_URL", "https://b'; script-src *"),
            ("USER_POOL_CLIENT_ID", "abc 123"),
        ] {
            let mut env = full.to_vec();
            env.retain(|(n, _)| *n != name);
            env.push((name, bad));
            assert!(
                matches!(refused(&env), ConfigError::Invalid { name: n, .. } if n == name),
                "{name}={bad}"
            );
        }
    }
}
