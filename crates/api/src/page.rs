//! The web page: one static HTML page, its script (ES modules, one job each) and its style sheet
//! (in `crates/api/web/`, compiled into the binary), and `/config.json`, which tells the same
//! files how to sign in where they are served. Each host merges [`router`] beside the API's router: the local runner with
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

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The page's files, served as they are: path, content type, body. The script is ES modules,
/// loaded with no build step: `app.js` imports the others by these paths.
const FILES: &[(&str, &str, &str)] = &[
    ("/", HTML, include_str!("../web/index.html")),
    ("/style.css", CSS, include_str!("../web/style.css")),
    ("/app.js", JAVASCRIPT, include_str!("../web/app.js")),
    ("/alerts.js", JAVASCRIPT, include_str!("../web/alerts.js")),
    (
        "/analysis.js",
        JAVASCRIPT,
        include_str!("../web/analysis.js"),
    ),
    ("/api.js", JAVASCRIPT, include_str!("../web/api.js")),
    ("/choices.js", JAVASCRIPT, include_str!("../web/choices.js")),
    ("/dom.js", JAVASCRIPT, include_str!("../web/dom.js")),
    (
        "/messages.js",
        JAVASCRIPT,
        include_str!("../web/messages.js"),
    ),
    ("/player.js", JAVASCRIPT, include_str!("../web/player.js")),
    ("/polling.js", JAVASCRIPT, include_str!("../web/polling.js")),
    ("/sent.js", JAVASCRIPT, include_str!("../web/sent.js")),
    ("/session.js", JAVASCRIPT, include_str!("../web/session.js")),
    ("/sign-in.js", JAVASCRIPT, include_str!("../web/sign-in.js")),
    (
        "/upload-form.js",
        JAVASCRIPT,
        include_str!("../web/upload-form.js"),
    ),
    ("/uploads.js", JAVASCRIPT, include_str!("../web/uploads.js")),
    (
        "/waveform.js",
        JAVASCRIPT,
        include_str!("../web/waveform.js"),
    ),
];

/// Made from the host's [`PageConfig`], not a file.
const CONFIG_JSON: &str = "/config.json";

/// The page's routes, all `GET` (and `HEAD`), none behind an authorizer: the page is the same for
/// everyone and holds no data; the data comes from the API, which needs a signed-in caller.
/// Every path of [`FILES`], and `/config.json`.
pub const ROUTES: &[&str] = &{
    let mut routes = [CONFIG_JSON; FILES.len() + 1];
    let mut i = 0;
    while i < FILES.len() {
        routes[i] = FILES[i].0;
        i += 1;
    }
    routes
};

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
    if value.starts_with("https://") && is_plain_origin(&value) {
        Ok(value)
    } else {
        Err(ConfigError::invalid(
            name,
            &value,
            "must be an https:// origin, such as https://cognito-idp.eu-west-1.amazonaws.com",
        ))
    }
}

/// `GET` of every file of the page and of `/config.json`, each with the security headers; refused
/// when the configuration names an origin that the Content-Security-Policy cannot carry as it is,
/// so that the page is never served without its policy.
pub fn router(config: &PageConfig) -> Result<Router, ConfigError> {
    let headers = security_headers(config)?;
    let config_json = serde_json::to_string(&config.sign_in).unwrap_or_default();
    let file = move |content_type: &'static str, body: String| {
        let headers = headers.clone();
        get(move || async move { answer(&headers, content_type, body) })
    };
    let files = FILES
        .iter()
        .fold(Router::new(), |router, &(path, content_type, body)| {
            router.route(path, file(content_type, body.into()))
        });
    Ok(files.route(CONFIG_JSON, file("application/json", config_json)))
}

type Headers = Vec<(HeaderName, HeaderValue)>;

fn security_headers(config: &PageConfig) -> Result<Headers, ConfigError> {
    if let Some(bad) = config
        .connect
        .iter()
        .chain(&config.media)
        .find(|o| !is_plain_origin(o))
    {
        return Err(ConfigError::invalid(
            "origin",
            &bad.escape_debug().to_string(),
            "the page's Content-Security-Policy names http:// or https:// origins only (a host \
             and a port): anything else could not be sent in a header, or would change the policy",
        ));
    }
    let csp = config.content_security_policy();
    let csp = HeaderValue::from_str(&csp).map_err(|_| {
        ConfigError::invalid(
            "origin",
            &csp.escape_debug().to_string(),
            "the page's Content-Security-Policy cannot be sent in a header",
        )
    })?;
    let mut headers = vec![
        (header::CONTENT_SECURITY_POLICY, csp),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("same-origin"),
        ),
        (
            HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
        ),
        // Small files: always revalidated, so a new version is seen at the next load.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    if matches!(config.sign_in, SignIn::Cognito { .. }) {
        // Served over HTTPS by API Gateway; never over plain HTTP again.
        headers.push((
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ));
    }
    Ok(headers)
}

/// `http://host[:port]` or `https://...`, the host a name or an address (`[::1]` too): one word
/// of the policy, which no origin can break out of.
fn is_plain_origin(origin: &str) -> bool {
    let host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or_default();
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

fn answer(headers: &Headers, content_type: &'static str, body: String) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    response.headers_mut().extend(headers.iter().cloned());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use tower::ServiceExt;

    async fn get(config: &PageConfig, path: &str) -> Response {
        let request = axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap();
        router(config).unwrap().oneshot(request).await.unwrap()
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
        let files = FILES
            .iter()
            .map(|&(path, content_type, _)| (path, content_type));
        for (path, content_type) in files.chain([(CONFIG_JSON, "application/json")]) {
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
        assert_eq!(ROUTES.len(), FILES.len() + 1);
        assert_eq!(
            FILES.iter().filter(|(_, t, _)| *t == JAVASCRIPT).count(),
            FILES.len() - 2,
            "every file but the page and its style sheet is a module"
        );
        assert_eq!(
            body(get(&config, "/config.json").await).await,
            r#"{"sign_in":"local","origin":"http://127.0.0.1:3000"}"#
        );
        assert_eq!(get(&config, "/index.html").await.status(), 404);
    }

    #[tokio::test]
    async fn the_page_has_no_inline_script_or_style() {
        let html = body(get(&PageConfig::local("http://x"), "/").await).await;
        assert!(html.contains(r#"<script type="module" src="/app.js"></script>"#));
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

    /// What a path answers: its content type and its body.
    type Served = BTreeMap<String, (String, String)>;

    /// Every route of the page, as the router answers it.
    async fn served() -> Served {
        let config = PageConfig::local("http://127.0.0.1:3000");
        let mut served = Served::new();
        for path in ROUTES {
            let response = get(&config, path).await;
            let content_type = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned();
            served.insert(path.to_string(), (content_type, body(response).await));
        }
        served
    }

    /// The specifiers a module imports: `import ... from './x.js'`, `export ... from`,
    /// `import './x.js'` and `import('./x.js')`, in either quotes.
    fn imports(module: &str) -> Vec<&str> {
        let mut specifiers = Vec::new();
        for marker in ["from ", "import ", "import("] {
            for (at, _) in module.match_indices(marker) {
                let rest = &module[at + marker.len()..];
                let Some(quote) = rest.chars().next().filter(|c| matches!(c, '\'' | '"')) else {
                    continue;
                };
                if let Some(end) = rest[1..].find(quote) {
                    specifiers.push(&rest[1..1 + end]);
                }
            }
        }
        specifiers
    }

    /// Follows the script as a browser loads it, from the page's `<script type="module">`
    /// through every import: what it needs that is not served as JavaScript, and the modules it
    /// reached.
    fn follow_imports(served: &Served) -> (Vec<String>, BTreeSet<String>) {
        let (_, html) = &served["/"];
        let entry = html
            .split_once(r#"<script type="module" src=""#)
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(src, _)| src.to_owned())
            .expect("the page loads its script as a module");
        let mut missing = Vec::new();
        let mut reached = BTreeSet::new();
        let mut next = vec![(entry, "/".to_owned())];
        while let Some((path, importer)) = next.pop() {
            match served.get(&path) {
                Some((content_type, module)) if content_type == JAVASCRIPT => {
                    if reached.insert(path.clone()) {
                        for specifier in imports(module) {
                            // Every module is at the root, beside the page.
                            match specifier.strip_prefix("./") {
                                Some(name) => next.push((format!("/{name}"), path.clone())),
                                None => missing.push(format!(
                                    "{path} imports '{specifier}', not a module beside it"
                                )),
                            }
                        }
                    }
                }
                _ => missing.push(format!("{path} (imported by {importer}) is not served")),
            }
        }
        (missing, reached)
    }

    #[tokio::test]
    async fn every_module_the_script_imports_is_served_and_every_module_served_is_imported() {
        let served = served().await;
        let (missing, reached) = follow_imports(&served);
        assert_eq!(missing, Vec::<String>::new());
        let modules: BTreeSet<String> = served
            .iter()
            .filter(|(_, (content_type, _))| content_type == JAVASCRIPT)
            .map(|(path, _)| path.clone())
            .collect();
        assert_eq!(
            reached, modules,
            "a module served that the page never loads"
        );
        assert!(reached.len() > 10, "{reached:?}");

        // A module left out of the routes is seen, and named with the module that needs it.
        let mut without_dom = served.clone();
        without_dom.remove("/dom.js");
        let (missing, _) = follow_imports(&without_dom);
        assert!(!missing.is_empty(), "a missing module went unseen");
        for problem in &missing {
            assert!(problem.starts_with("/dom.js (imported by /"), "{problem}");
        }
    }

    #[test]
    fn an_origin_that_a_header_cannot_carry_refuses_the_page() {
        for bad in [
            "http://127.0.0.1:3000\n",
            "http://127.0.0.1:3000\r\nX-Injected: 1",
            "http://x; script-src *",
            "'unsafe-inline'",
            "http://é.example",
        ] {
            let error = router(&PageConfig::local(bad)).unwrap_err();
            assert!(
                matches!(&error, ConfigError::Invalid { name: "origin", value, .. }
                    if *value == bad.escape_debug().to_string()),
                "{bad:?}: {error:?}"
            );
            assert!(
                error.to_string().contains("Content-Security-Policy"),
                "{error}"
            );
            assert!(!error.to_string().contains('\n'), "{error}");
        }
        let mut config = cognito();
        config.media.push("https://b.example\n".into());
        assert!(router(&config).is_err());
        for good in [
            "http://127.0.0.1:3000",
            "http://[::1]:3000",
            "http://localhost",
        ] {
            assert!(router(&PageConfig::local(good)).is_ok(), "{good}");
        }
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
