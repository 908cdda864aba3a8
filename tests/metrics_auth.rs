//! `http.metrics_token` against a real server: `/metrics` refuses a scrape without the bearer
//! token or with a wrong one (401, `WWW-Authenticate: Bearer`) and serves it with the token;
//! `/healthz` and `/readyz` stay public.

mod common;

use common::media::TestServer;

const TOKEN: &str = "scrape-0123456789abcdef";

#[tokio::test]
async fn metrics_need_the_bearer_token_when_one_is_set() {
    let ts = TestServer::start_with(1, |c| c.http.metrics_token = TOKEN.to_owned()).await;
    let url = format!("{}/metrics", ts.api.cs.endpoint.trim_end_matches('/'));
    let get = |auth: Option<String>| {
        let mut req = ts.api.client.get(&url);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };
    let anonymous = get(None).await.expect("sent");
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));
    assert_eq!(get(Some("Bearer wrong-0123456789abcdef".into())).await.expect("sent").status(), 401);
    assert_eq!(get(Some(TOKEN.to_owned())).await.expect("sent").status(), 401, "the scheme is required");
    let scraped = get(Some(format!("Bearer {TOKEN}"))).await.expect("sent");
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().await.expect("body").contains("switchboard_http_requests_total"));
    let (status, _) = ts.api.get_public("/healthz").await;
    assert_eq!(status, 200);
    let (status, _) = ts.api.get_public("/readyz").await;
    assert_eq!(status, 200);
    ts.stop().await;
}
