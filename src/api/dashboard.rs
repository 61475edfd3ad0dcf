//! The built-in dashboard's static assets (`/`, `/format.js`, `/dashboard.js`,
//! `/dashboard.css`, `/favicon.svg`), embedded in the binary and served with their content type, an `ETag`
//! (`Cache-Control: no-cache`: the browser revalidates and gets `304` until the binary
//! changes) and a strict `Content-Security-Policy` (scripts, styles and requests from this
//! origin only; no inline script or style; no framing).
//!
//! The assets carry no data, so they are served without the admin token; the page reads
//! everything from `/api/v1/*`, which keeps requiring it (`admin.auth`). The page asks for
//! the token when the API answers 401 and keeps it in the tab's `sessionStorage`.
//!
//! This module owns only the assets and their headers; what the page shows is in
//! `dashboard/dashboard.js` and `docs/dashboard.md`.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Path it is served at.
    pub path: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The file.
    pub body: &'static [u8],
}

/// Every asset of the dashboard.
pub static ASSETS: [Asset; 5] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("dashboard/index.html"),
    },
    Asset {
        path: "/format.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("dashboard/format.js"),
    },
    Asset {
        path: "/dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("dashboard/dashboard.js"),
    },
    Asset {
        path: "/dashboard.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("dashboard/dashboard.css"),
    },
    Asset {
        path: "/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("dashboard/favicon.svg"),
    },
];

/// The policy every asset is served with.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The asset's entity tag: a CRC-32 of its bytes.
pub fn etag(a: &Asset) -> String {
    format!("\"{:08x}\"", crc32fast::hash(a.body))
}

/// Serves `a`, or `304 Not Modified` when the request's `If-None-Match` names its tag.
pub fn serve(a: &'static Asset, request: &HeaderMap) -> Response {
    let tag = etag(a);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Ok(v) = HeaderValue::from_str(&tag) {
        headers.insert(header::ETAG, v);
    }
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    (headers, a.body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole dashboard stays small enough to load at once on any link.
    #[test]
    fn assets_total_under_200_kb() {
        let total: usize = ASSETS.iter().map(|a| a.body.len()).sum();
        assert!(total > 5_000, "the assets are embedded ({total} bytes)");
        assert!(total < 200 * 1024, "dashboard assets are {total} bytes");
    }

    #[test]
    fn the_page_loads_only_its_own_files_and_no_inline_script() {
        let html = std::str::from_utf8(ASSETS[0].body).expect("utf-8");
        // The formatters first: `defer` runs the scripts in document order.
        assert!(html.contains(
            "<script src=\"/format.js\" defer></script>\n<script src=\"/dashboard.js\" defer></script>"
        ));
        assert!(html.contains(r#"<link rel="stylesheet" href="/dashboard.css">"#));
        assert!(!html.contains("<script>"), "no inline script");
        assert!(!html.contains(" style="), "no inline style");
        assert!(!html.contains("http://") && !html.contains("https://"));
        for script in ["/format.js", "/dashboard.js"] {
            let js = std::str::from_utf8(find(script).expect("script").body).expect("utf-8");
            let js = js.replace("http://www.w3.org/2000/svg", "");
            assert!(
                !js.contains("http://") && !js.contains("https://"),
                "{script}: no remote requests"
            );
            assert!(
                !js.contains("innerHTML"),
                "{script}: DOM from text nodes only"
            );
        }
    }

    fn find(path: &str) -> Option<&'static Asset> {
        ASSETS.iter().find(|a| a.path == path)
    }

    #[test]
    fn etag_revalidation_answers_304() {
        let a = find("/dashboard.js").expect("asset");
        let r = serve(a, &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("text/javascript; charset=utf-8")
        );
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&etag(a)).expect("tag"),
        );
        assert_eq!(serve(a, &h).status(), StatusCode::NOT_MODIFIED);
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"0\""));
        assert_eq!(serve(a, &h).status(), StatusCode::OK);
        assert!(find("/secret").is_none());
    }
}
