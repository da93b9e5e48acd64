//! The built-in web client served at `/`: the files of `src/serve/web/`,
//! embedded gzip-compressed at build time (see `build.rs`), served with an
//! ETag (`If-None-Match` → 304) and a strict Content-Security-Policy. Pure:
//! turns a request head into response bytes; nothing is read from disk.

use crate::serve::http::Head;

/// One embedded file.
pub struct Asset {
    /// Its URL path (`/app.js`).
    pub path: &'static str,
    pub content_type: &'static str,
    /// A strong validator, quoted: `"0123abcd…"`.
    pub etag: &'static str,
    /// Length of the uncompressed content.
    pub len: usize,
    /// The content as one gzip member.
    pub gz: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The policy every asset is served with: scripts and styles only from the
/// relay's own files (no inline script, no style attributes), sockets only
/// back to the relay, nothing else fetched.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self' data: blob:; manifest-src 'self'; worker-src 'self'; \
base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Length of the fixed gzip header `build.rs` writes (no optional fields).
const GZIP_HEADER: usize = 10;
/// Length of the gzip trailer (CRC-32 and size).
const GZIP_TRAILER: usize = 8;

/// The asset at `path`; `/` is the page.
pub fn find(path: &str) -> Option<&'static Asset> {
    let path = if path == "/" { "/index.html" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}

/// Whether an `Accept-Encoding` value allows gzip.
pub fn accepts_gzip(accept: Option<&str>) -> bool {
    let Some(v) = accept else { return false };
    v.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let name = parts.next().unwrap_or("");
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .is_some_and(|q| q.parse::<f32>().map(|q| q <= 0.0).unwrap_or(false))
        });
        (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
    })
}

/// Whether an `If-None-Match` value names `etag` (weak comparison).
fn matches_etag(if_none_match: Option<&str>, etag: &str) -> bool {
    let Some(v) = if_none_match else { return false };
    v.split(',').map(str::trim).any(|t| {
        let t = t.strip_prefix("W/").unwrap_or(t);
        t == "*" || t == etag
    })
}

/// The full response for a GET of an embedded asset, or `None` when `head`
/// names none.
pub fn respond(head: &Head) -> Option<Vec<u8>> {
    let asset = find(&head.path)?;
    if matches_etag(head.header("if-none-match"), asset.etag) {
        return Some(build(asset, 304, "Not Modified", None, &[]));
    }
    if accepts_gzip(head.header("accept-encoding")) {
        return Some(build(asset, 200, "OK", Some("gzip"), asset.gz));
    }
    let body = inflate(asset);
    Some(build(asset, 200, "OK", None, &body))
}

/// The asset's uncompressed content (for clients that refuse gzip).
pub fn inflate(asset: &Asset) -> Vec<u8> {
    let end = asset.gz.len().saturating_sub(GZIP_TRAILER);
    let raw = asset.gz.get(GZIP_HEADER..end).unwrap_or(&[]);
    match miniz_oxide::inflate::decompress_to_vec_with_limit(raw, asset.len) {
        Ok(v) => v,
        Err(e) => {
            log::error!("embedded asset {} does not inflate: {e:?}", asset.path);
            Vec::new()
        }
    }
}

fn build(asset: &Asset, status: u16, reason: &str, encoding: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
Cache-Control: no-cache\r\nETag: {}\r\nVary: Accept-Encoding\r\nX-Content-Type-Options: nosniff\r\n\
Referrer-Policy: no-referrer\r\nContent-Security-Policy: {CSP}\r\n",
        asset.content_type,
        body.len(),
        asset.etag,
    );
    if let Some(e) = encoding {
        out.push_str(&format!("Content-Encoding: {e}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::http::parse_head;

    fn get(raw: &str) -> String {
        let (head, _) = parse_head(raw.as_bytes()).unwrap().unwrap();
        String::from_utf8_lossy(&respond(&head).unwrap()).into_owned()
    }

    #[test]
    fn every_asset_inflates_to_its_length() {
        assert!(find("/").is_some() && find("/app.js").is_some());
        for a in ASSETS {
            assert_eq!(inflate(a).len(), a.len, "{}", a.path);
        }
        assert!(find("/nope.js").is_none());
    }

    #[test]
    fn gzip_etag_and_304() {
        let page = find("/").unwrap();
        let r = get("GET / HTTP/1.1\r\nAccept-Encoding: br, gzip;q=0.8\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.contains("Content-Encoding: gzip"));
        assert!(r.contains(&format!("ETag: {}", page.etag)));
        assert!(r.contains("script-src 'self'"));
        let r = get("GET / HTTP/1.1\r\nAccept-Encoding: gzip;q=0\r\n\r\n");
        assert!(!r.contains("Content-Encoding"));
        assert!(r.contains("<!doctype html>"));
        let r = get(&format!(
            "GET /index.html HTTP/1.1\r\nIf-None-Match: W/{}\r\n\r\n",
            page.etag
        ));
        assert!(r.starts_with("HTTP/1.1 304"), "{r}");
        assert!(r.contains("Content-Length: 0"));
    }

    #[test]
    fn no_inline_script_or_style_attributes() {
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".html")) {
            let text = String::from_utf8(inflate(a)).unwrap();
            assert!(!text.contains(" style="), "{}: style attribute", a.path);
            for (i, _) in text.match_indices("<script") {
                let tag = &text[i..i + text[i..].find('>').unwrap()];
                assert!(tag.contains("src="), "{}: inline script", a.path);
            }
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{}: external URL",
                a.path
            );
        }
    }
}
