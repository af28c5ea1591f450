//! One outbound POST with a deadline: the warehouse calls, alerts and the Admin API go through here. The
//! call is aborted when the deadline passes.

use std::time::Duration;

use futures_util::future::{select, Either};
use wasm_bindgen::JsValue;
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit};

use crate::core::retry::{self, Outcome};

/// What an outbound call got: the status, `Retry-After`, and the answer's bytes.
pub type Answer = (u16, Option<String>, Vec<u8>);

/// POSTs `body` with `headers` to `url`, giving up after `timeout_ms`.
pub async fn post(url: &str, headers: &[(&str, String)], body: &[u8], timeout_ms: u64) -> Outcome {
    match call(url, headers, body, timeout_ms).await {
        Ok((code, retry_after, bytes)) => {
            Outcome::Status { code, retry_after, body_snippet: retry::snippet(&bytes) }
        }
        Err(o) => o,
    }
}

/// POSTs and reads the whole answer; `Err` is a network failure or the timeout.
pub async fn call(
    url: &str,
    headers: &[(&str, String)],
    body: &[u8],
    timeout_ms: u64,
) -> Result<Answer, Outcome> {
    let h = Headers::new();
    for (k, v) in headers {
        let _ = h.set(k, v);
    }
    let text = String::from_utf8_lossy(body).into_owned();
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(h).with_body(Some(JsValue::from_str(&text)));
    let req = match Request::new_with_init(url, &init) {
        Ok(r) => r,
        Err(e) => return Err(Outcome::Network(format!("bad URL: {e}"))),
    };
    let controller = AbortController::default();
    let signal = controller.signal();
    let call = async move {
        let mut resp = Fetch::Request(req).send_with_signal(&signal).await?;
        let code = resp.status_code();
        let retry_after = resp.headers().get("retry-after").ok().flatten();
        let bytes = resp.bytes().await.unwrap_or_default();
        Ok::<_, worker::Error>((code, retry_after, bytes))
    };
    let timer = Delay::from(Duration::from_millis(timeout_ms));
    match select(Box::pin(call), Box::pin(timer)).await {
        Either::Left((Ok(answer), _)) => Ok(answer),
        Either::Left((Err(e), _)) => Err(Outcome::Network(e.to_string())),
        Either::Right(_) => {
            controller.abort();
            Err(Outcome::Timeout)
        }
    }
}
