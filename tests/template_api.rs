//! `template.yaml`: every way into the messages API carries a Cognito token but the web page's
//! own files, and the routes are those the code serves.
//!
//! The check runs on the real template and on the stack each backend deploys (nothing wrong), and
//! on copies broken the ways that matter (the check objects).

use std::collections::BTreeSet;

use serde_json::{Value, json};
use system_tests::template::{
    Case, assert_passes_deployed, assert_refuses, events, r#ref, remove, resources_of_type, set,
    template,
};
use transcoder_api::{ROUTES, page};

/// Methods a client may send to a path no route names: each reaches the router (404 or 405).
/// OPTIONS is left to API Gateway's CORS preflight handling.
const CATCH_ALL_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
const CATCH_ALL_PATH: &str = "/{proxy+}";

// ------------------------------------------------------------------------------------------ checks

/// Every way into the API carries a Cognito JWT: one HTTP API, whose default authorizer is a JWT
/// authorizer on the stack's user pool; every route on it, none opting out but `GET` of the web
/// page's files (`page::ROUTES`), which must load before anyone signs in and hold no data; the
/// routes the code serves, plus a catch-all per method so that unknown paths and wrong methods
/// get the router's 404 and 405.
fn route_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let apis = resources_of_type(t, "AWS::Serverless::HttpApi");
    let api_ids: Vec<Value> = apis.iter().map(|(id, _)| r#ref(id)).collect();
    if apis.len() != 1 {
        problems.push(format!("{} HTTP APIs, not one", apis.len()));
    }
    for (id, api) in &apis {
        let auth = &api["Properties"]["Auth"];
        let default = auth["DefaultAuthorizer"].as_str().unwrap_or_default();
        let jwt = &auth["Authorizers"][default]["JwtConfiguration"];
        let issuer = jwt["issuer"]["Fn::Sub"].as_str().unwrap_or_default();
        if default.is_empty() || default == "NONE" {
            problems.push(format!("{id} has no default authorizer"));
        } else if !(issuer.starts_with("https://cognito-idp.") && issuer.ends_with("/${UserPool}"))
            || jwt["audience"] != json!([r#ref("UserPoolClient")])
        {
            problems.push(format!(
                "{id}'s default authorizer {default} is not a JWT authorizer for UserPool and \
                 UserPoolClient: {jwt}"
            ));
        }
    }
    for kind in [
        "AWS::Serverless::Api",
        "AWS::ApiGateway::RestApi",
        "AWS::ApiGatewayV2::Api",
        "AWS::ApiGatewayV2::Route",
        "AWS::Lambda::Url",
    ] {
        for (id, _) in resources_of_type(t, kind) {
            problems.push(format!(
                "{id} ({kind}) is a way in that no check here covers"
            ));
        }
    }

    let mut routes = BTreeSet::new();
    for (function_id, function) in resources_of_type(t, "AWS::Serverless::Function") {
        if !function["Properties"]["FunctionUrlConfig"].is_null() {
            problems.push(format!(
                "{function_id} has a function URL, which bypasses the authorizer"
            ));
        }
        for kind in ["Api", "HttpApi"] {
            for (name, event) in events(function, kind) {
                let method = event["Method"]
                    .as_str()
                    .unwrap_or_default()
                    .to_ascii_uppercase();
                let path = event["Path"].as_str().unwrap_or_default();
                let at = format!("{function_id} event {name} ({method} {path})");
                if kind == "Api" || !api_ids.contains(&event["ApiId"]) {
                    problems.push(format!("{at} is not on the HTTP API with the authorizer"));
                }
                let page_file = method == "GET" && page::ROUTES.contains(&path);
                if page_file && event["Auth"] != json!({"Authorizer": "NONE"}) {
                    problems.push(format!(
                        "{at} is a file of the web page, which must load without a token: \
                         Auth {}",
                        event["Auth"]
                    ));
                } else if !page_file && !event["Auth"]["Authorizer"].is_null() {
                    problems.push(format!(
                        "{at} sets its own authorizer {}; every route uses the default",
                        event["Auth"]["Authorizer"]
                    ));
                }
                if event["PayloadFormatVersion"] != "2.0" {
                    problems.push(format!("{at} is not payload format 2.0"));
                }
                // ANY and OPTIONS would take browsers' preflights to the authorizer.
                if method == "ANY" || method == "OPTIONS" {
                    problems.push(format!(
                        "{at} catches CORS preflights, which carry no token"
                    ));
                }
                routes.insert((method, path.to_owned()));
            }
        }
    }
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .chain(
            page::ROUTES
                .iter()
                .map(|p| ("GET".to_owned(), p.to_string())),
        )
        .chain(
            CATCH_ALL_METHODS
                .iter()
                .map(|m| (m.to_string(), CATCH_ALL_PATH.to_owned())),
        )
        .collect();
    if routes != expected {
        problems.push(format!(
            "routes {:?} missing, {:?} unexpected (the code serves {ROUTES:?})",
            expected.difference(&routes).collect::<Vec<_>>(),
            routes.difference(&expected).collect::<Vec<_>>()
        ));
    }
    problems
}

// ------------------------------------------------------------------------------------------- tests

const API_EVENTS: &str = "/Resources/MessagesApiFunction/Properties/Events";
const LIST: &str = "/Resources/MessagesApiFunction/Properties/Events/ListMessages/Properties";
const PAGE: &str = "/Resources/MessagesApiFunction/Properties/Events/WebPage/Properties";

#[test]
fn every_route_requires_a_cognito_token() {
    let t = template();
    assert_eq!(route_problems(&t), Vec::<String>::new());
    assert_passes_deployed(route_problems, &t);

    let cases: &[Case] = &[
        (
            "a route opts out of the authorizer",
            |t| set(t, &format!("{LIST}/Auth"), json!({"Authorizer": "NONE"})),
            "sets its own authorizer",
        ),
        (
            "a route is on an implicit API",
            |t| remove(t, &format!("{LIST}/ApiId")),
            "not on the HTTP API",
        ),
        (
            "the API has no default authorizer",
            |t| {
                remove(
                    t,
                    "/Resources/MessagesHttpApi/Properties/Auth/DefaultAuthorizer",
                )
            },
            "no default authorizer",
        ),
        (
            "the authorizer accepts another client's tokens",
            |t| {
                let jwt =
                    &mut t["Resources"]["MessagesHttpApi"]["Properties"]["Auth"]["Authorizers"];
                jwt["CognitoJwt"]["JwtConfiguration"]["audience"] = json!(["some-other-client"]);
            },
            "not a JWT authorizer",
        ),
        (
            "a route takes ANY method, preflights included",
            |t| set(t, &format!("{LIST}/Method"), json!("ANY")),
            "preflights",
        ),
        (
            "a route gets payload format 1.0",
            |t| set(t, &format!("{LIST}/PayloadFormatVersion"), json!("1.0")),
            "payload format 2.0",
        ),
        (
            "a catch-all method is missing",
            |t| remove(t, &format!("{API_EVENTS}/OtherDelete")),
            "missing",
        ),
        (
            "a route has another path than the code's",
            |t| set(t, &format!("{LIST}/Path"), json!("/message")),
            "missing",
        ),
        (
            "the page's route is behind the authorizer: nobody could load it to sign in",
            |t| remove(t, &format!("{PAGE}/Auth")),
            "must load without a token",
        ),
        (
            "a route without the authorizer takes POST on the page's path",
            |t| set(t, &format!("{PAGE}/Method"), json!("POST")),
            "sets its own authorizer",
        ),
        (
            "a path the page does not serve goes without the authorizer",
            |t| set(t, &format!("{PAGE}/Path"), json!("/messages/{id}")),
            "sets its own authorizer",
        ),
        (
            "a page file is missing",
            |t| remove(t, &format!("{API_EVENTS}/WebPageConfig")),
            "missing",
        ),
        (
            "messages-api has a function URL",
            |t| {
                let api = &mut t["Resources"]["MessagesApiFunction"]["Properties"];
                api["FunctionUrlConfig"] = json!({"AuthType": "NONE"});
            },
            "function URL",
        ),
    ];
    assert_refuses(route_problems, &t, cases);
}

/// The origins browsers may script the API and the bucket from are named, never `*`: the bucket
/// takes uploads from the stack's own web page (the HTTP API's origin, also output WebAppUrl)
/// and from `CorsAllowedOrigins`; the API, which serves the page on its own origin, needs CORS
/// only for `CorsAllowedOrigins`.
fn cors_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let page = json!({"Fn::Sub": "https://${MessagesHttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"});
    let bucket_origins = json!({"Fn::Split": [",", {"Fn::Join": [",", [
        page,
        {"Fn::Join": [",", r#ref("CorsAllowedOrigins")]}
    ]]}]});
    let rules = &t["Resources"]["MediaBucket"]["Properties"]["CorsConfiguration"]["CorsRules"];
    // The headers upload links sign: the type, and the metadata of an upload's choice.
    use transcoder_core::{LOUDNESS_KEY, METADATA_HEADER_PREFIX, OUTPUTS_KEY};
    let signed = [
        "content-type".to_owned(),
        format!("{METADATA_HEADER_PREFIX}{OUTPUTS_KEY}"),
        format!("{METADATA_HEADER_PREFIX}{LOUDNESS_KEY}"),
    ];
    if *rules
        != json!([{
            "AllowedOrigins": bucket_origins,
            "AllowedMethods": ["GET", "PUT"],
            "AllowedHeaders": signed,
            "MaxAge": 3000
        }])
    {
        problems.push(format!(
            "MediaBucket's CORS is not the web page's origin and CorsAllowedOrigins, GET and PUT \
             with Content-Type and the x-amz-meta headers of a choice: {rules}"
        ));
    }
    let api = &t["Resources"]["MessagesHttpApi"]["Properties"]["DefinitionBody"]["x-amazon-apigateway-cors"];
    if api["allowOrigins"] != r#ref("CorsAllowedOrigins") {
        problems.push(format!(
            "the HTTP API's CORS origins are not CorsAllowedOrigins: {}",
            api["allowOrigins"]
        ));
    }
    let wildcard = json!({"Fn::Contains": [r#ref("CorsAllowedOrigins"), "*"]});
    if t["Rules"]["NoWildcardOrigin"]["Assertions"][0]["Assert"] != json!({"Fn::Not": [wildcard]}) {
        problems.push("no rule refuses '*' in CorsAllowedOrigins".into());
    }
    let url = &t["Outputs"]["WebAppUrl"]["Value"]["Fn::Sub"];
    if url.as_str().map(|u| u.trim_end_matches('/')) != page["Fn::Sub"].as_str() {
        problems.push(format!(
            "the output WebAppUrl {url} is not the origin the bucket allows"
        ));
    }
    problems
}

#[test]
fn cors_names_the_web_page_and_the_given_origins_only() {
    let t = template();
    assert_eq!(cors_problems(&t), Vec::<String>::new());
    assert_passes_deployed(cors_problems, &t);
    const RULE: &str = "/Resources/MediaBucket/Properties/CorsConfiguration/CorsRules/0";
    let cases: &[Case] = &[
        (
            "the bucket takes uploads from any origin",
            |t| set(t, &format!("{RULE}/AllowedOrigins"), json!(["*"])),
            "not the web page's origin",
        ),
        (
            "the bucket does not take uploads from the web page",
            |t| {
                set(
                    t,
                    &format!("{RULE}/AllowedOrigins"),
                    r#ref("CorsAllowedOrigins"),
                )
            },
            "not the web page's origin",
        ),
        (
            "the bucket takes DELETE",
            |t| {
                set(
                    t,
                    &format!("{RULE}/AllowedMethods"),
                    json!(["GET", "PUT", "DELETE"]),
                )
            },
            "GET and PUT",
        ),
        (
            "the API takes any origin",
            |t| {
                let cors =
                    "/Resources/MessagesHttpApi/Properties/DefinitionBody/x-amazon-apigateway-cors";
                set(t, &format!("{cors}/allowOrigins"), json!(["*"]))
            },
            "not CorsAllowedOrigins",
        ),
        (
            "'*' may be given as an origin",
            |t| remove(t, "/Rules/NoWildcardOrigin"),
            "refuses '*'",
        ),
        (
            "the stack gives no page URL",
            |t| remove(t, "/Outputs/WebAppUrl"),
            "WebAppUrl",
        ),
    ];
    assert_refuses(cors_problems, &t, cases);
}
