//! The built-in web client served at `/`: one self-contained page.

/// The page; it reads the token from the URL fragment (`#token=`), never sends it in a URL.
pub const INDEX_HTML: &str = include_str!("index.html");
