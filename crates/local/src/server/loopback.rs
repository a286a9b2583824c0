//! The server answers only requests addressed to a loopback name: a web page that rebinds its
//! own domain to 127.0.0.1 still sends its own `Host`, and is refused (421).

use std::net::{Ipv4Addr, Ipv6Addr};

use axum::extract::Request;
use axum::http::header;
use tracing::warn;
use transcoder_api::ApiError;
use transcoder_core::Escaped;

pub(super) async fn loopback_only(request: Request) -> Result<Request, ApiError> {
    match loopback_host(&request) {
        Ok(()) => Ok(request),
        Err(host) => {
            warn!(host = %Escaped(&host), path = request.uri().path(), "refused: not a loopback host");
            Err(ApiError::misdirected(&host))
        }
    }
}

/// Whether the request is addressed to a loopback name (`localhost`, `127.x.y.z`, `[::1]`, any
/// port); `Err` holds the name it used instead. The URI's authority counts as well as `Host`.
fn loopback_host(request: &Request) -> Result<(), String> {
    let named: Vec<&str> = request
        .uri()
        .authority()
        .map(|a| a.as_str())
        .into_iter()
        .chain(
            request
                .headers()
                .get_all(header::HOST)
                .iter()
                .map(|h| h.to_str().unwrap_or("(not text)")),
        )
        .collect();
    if named.is_empty() {
        return Err("(none)".into());
    }
    match named.iter().find(|host| !is_loopback(host)) {
        Some(host) => Err((*host).to_owned()),
        None => Ok(()),
    }
}

fn is_loopback(authority: &str) -> bool {
    let (host_ok, port) = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, port)) => (
                ip.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback()),
                port,
            ),
            None => return false,
        },
        None => {
            let (host, port) = authority
                .find(':')
                .map_or((authority, ""), |i| authority.split_at(i));
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback());
            (loopback, port)
        }
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_names_are_ours() {
        for host in [
            "localhost",
            "LOCALHOST:3000",
            "127.0.0.1",
            "127.0.0.1:3000",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:3000",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "evil.example",
            "127.0.0.1.evil.example",
            "127.0.0.1.evil.example:3000",
            "localhost.evil.example",
            "evil.example:3000",
            "localhost:",
            "localhost:3000x",
            "127.0.0.1:3000@evil.example",
            "evil@127.0.0.1",
            "10.0.0.1",
            "0.0.0.0:3000",
            "[::2]:3000",
            "[::1",
            "",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
