//! Who may use the console: loopback as it is; others with a session from `/login` (the API
//! token, once). Forms carry a CSRF token; requests another site sent are refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::{views, Console};
use crate::paas::secrets;

/// How long a session lasts.
const SESSION: Duration = Duration::from_secs(12 * 3600);

/// How many sessions are kept at most (the oldest goes first).
const MAX_SESSIONS: usize = 1024;

/// The session cookie's name.
const COOKIE: &str = "shibafu_session";

/// Where a request came from, put on it by the server: loopback or not.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// From 127.0.0.0/8 or ::1.
    pub local: bool,
}

/// The caller a handler serves: the CSRF token its forms carry, and whether it signed in.
#[derive(Debug, Clone)]
pub struct Who {
    /// The token each form must send back.
    pub csrf: String,
    /// A session (not loopback): the page offers to sign out.
    pub signed_in: bool,
}

struct Session {
    csrf: String,
    until: Instant,
}

/// The token, and the sessions made with it.
pub struct Auth {
    token: String,
    local_csrf: String,
    sessions: Mutex<HashMap<String, Session>>,
}

impl Auth {
    /// With the API's token.
    pub fn new(token: String) -> std::io::Result<Auth> {
        Ok(Auth { token, local_csrf: secrets::random_hex()?, sessions: Mutex::new(HashMap::new()) })
    }

    /// The caller of a request, if it may use the console.
    fn who(&self, caller: Option<Caller>, headers: &HeaderMap) -> Option<Who> {
        if caller.is_some_and(|c| c.local) {
            return Some(Who { csrf: self.local_csrf.clone(), signed_in: false });
        }
        let id = cookie(headers, COOKIE)?;
        let sessions = self.sessions.lock().ok()?;
        let (_, s) = sessions.iter().find(|(k, s)| secrets::same(k, &id) && s.until > Instant::now())?;
        Some(Who { csrf: s.csrf.clone(), signed_in: true })
    }

    /// A new session: its id.
    fn open(&self) -> std::io::Result<String> {
        let (id, csrf) = (secrets::random_hex()?, secrets::random_hex()?);
        let mut sessions = self.sessions.lock().map_err(|_| std::io::Error::other("the sessions' lock is poisoned"))?;
        let now = Instant::now();
        sessions.retain(|_, s| s.until > now);
        while sessions.len() >= MAX_SESSIONS {
            let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.until).map(|(k, _)| k.clone()) else { break };
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), Session { csrf, until: now + SESSION });
        Ok(id)
    }
}

/// A cookie's value.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// Whether a form's `csrf` is the caller's.
pub fn csrf_ok(who: &Who, given: &str) -> bool {
    secrets::same(&who.csrf, given)
}

/// The answer to a form without the right CSRF token.
pub fn csrf_refused() -> Response {
    views::error(StatusCode::FORBIDDEN, "Refused", "The form had no valid CSRF token: reload the page and send it again.")
}

/// Lets through callers who may use the console, with `Who` on the request; sends others to
/// `/login` (a page) or answers 401.
pub async fn require(State(console): State<Arc<Console>>, caller: Option<Extension<Caller>>, mut req: Request, next: Next) -> Response {
    match console.auth.who(caller.map(|c| c.0), req.headers()) {
        Some(who) => {
            req.extensions_mut().insert(who);
            next.run(req).await
        }
        None if req.method() == Method::GET => {
            let next_page = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
            super::see_other(&format!("/login?next={}", super::segment(&next_page)))
        }
        None => views::error(StatusCode::UNAUTHORIZED, "Sign in first", "Requests from other hosts need the API token: sign in at /login."),
    }
}

/// Refuses a request that changes something when the browser says another site sent it
/// (Sec-Fetch-Site, else an Origin that is not this host).
pub async fn same_site_only(req: Request, next: Next) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD && sent_from_elsewhere(req.headers()) {
        return views::error(StatusCode::FORBIDDEN, "Refused", "This request came from another site's page.");
    }
    next.run(req).await
}

fn sent_from_elsewhere(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return false };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    origin.split_once("://").map(|(_, authority)| authority) != Some(host)
}

/// `?next=`.
#[derive(serde::Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Where to go after signing in: a path of this console only.
fn next_page(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".into(),
    }
}

/// The sign-in form.
pub async fn login_page(axum::extract::Query(q): axum::extract::Query<NextQuery>) -> Response {
    views::login(StatusCode::OK, &next_page(q.next.as_deref()), None)
}

/// The sign-in form's fields.
#[derive(serde::Deserialize)]
pub struct Login {
    token: String,
    next: Option<String>,
}

/// Checks the token; a session cookie when it is right.
pub async fn login(State(console): State<Arc<Console>>, Form(form): Form<Login>) -> Response {
    let next = next_page(form.next.as_deref());
    if !secrets::same(form.token.trim(), &console.auth.token) {
        return views::login(StatusCode::UNAUTHORIZED, &next, Some("That is not the API token (cat /var/lib/shibafu/paas/api.token in the lab)."));
    }
    let id = match console.auth.open() {
        Ok(id) => id,
        Err(e) => return views::error(StatusCode::INTERNAL_SERVER_ERROR, "No session", &e.to_string()),
    };
    let mut resp = super::see_other(&next);
    let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}", SESSION.as_secs());
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// The sign-out form's field.
#[derive(serde::Deserialize)]
pub struct Csrf {
    csrf: String,
}

/// Ends the session.
pub async fn logout(State(console): State<Arc<Console>>, Extension(who): Extension<Who>, headers: HeaderMap, Form(form): Form<Csrf>) -> Response {
    if !csrf_ok(&who, &form.csrf) {
        return csrf_refused();
    }
    if let (Some(id), Ok(mut sessions)) = (cookie(&headers, COOKIE), console.auth.sessions.lock()) {
        sessions.remove(&id);
    }
    let mut resp = super::see_other("/login");
    resp.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_static("shibafu_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"));
    resp.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_session_is_found_by_its_cookie_and_loopback_needs_none() {
        let auth = Auth::new("t".repeat(64)).unwrap();
        assert!(auth.who(Some(Caller { local: false }), &HeaderMap::new()).is_none());
        assert!(!auth.who(Some(Caller { local: true }), &HeaderMap::new()).unwrap().signed_in);
        let id = auth.open().unwrap();
        let who = auth.who(Some(Caller { local: false }), &headers(&[("cookie", &format!("a=b; {COOKIE}={id}"))])).unwrap();
        assert!(who.signed_in && csrf_ok(&who, &who.csrf.clone()) && !csrf_ok(&who, "x"));
        assert!(auth.who(Some(Caller { local: false }), &headers(&[("cookie", &format!("{COOKIE}={id}x"))])).is_none());
    }

    #[test]
    fn other_sites_are_told_apart_from_this_one() {
        assert!(!sent_from_elsewhere(&headers(&[("host", "localhost:8080")])));
        assert!(!sent_from_elsewhere(&headers(&[("host", "localhost:8080"), ("origin", "http://localhost:8080")])));
        assert!(sent_from_elsewhere(&headers(&[("host", "localhost:8080"), ("origin", "http://evil.example")])));
        assert!(sent_from_elsewhere(&headers(&[("host", "localhost:8080"), ("sec-fetch-site", "cross-site")])));
        assert!(!sent_from_elsewhere(&headers(&[("sec-fetch-site", "same-origin")])));
    }

    #[test]
    fn after_signing_in_only_a_local_path_is_followed() {
        assert_eq!(next_page(Some("/apps/web")), "/apps/web");
        for bad in ["//evil.example/", "http://evil.example/", "/\\evil.example", ""] {
            assert_eq!(next_page(Some(bad)), "/", "{bad}");
        }
    }
}
