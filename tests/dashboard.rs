//! The Grafana dashboard (`deploy/grafana/switchboard.json`) and the alert rules
//! (`deploy/prometheus/alerts.yml`) query only what the server exposes.
//!
//! A real server runs a short real day: a group call in which two QUIC clients on different
//! workers publish and receive audio and simulcast video, a refused join, a 1:1 call that rings,
//! is answered and hung up, and a meeting whose lobby admits one person and rejects another, with
//! wrong passcodes up to the rate limit, and webhook events to an app that refuses the first
//! delivery once. Then every PromQL expression of the dashboard (panel
//! targets and template variable queries) and of the alert rules is parsed with a real PromQL
//! parser, and every metric it selects must be a series of the scraped `/metrics`, every label it
//! matches or groups by must be a label of that series, and every label value it matches
//! exactly (`=`, or `=~` over plain alternatives) must have been seen.
//!
//! Why compare against the samples and not the `# HELP`/`# TYPE` lines: the prometheus crate
//! leaves a metric family out of the exposition entirely until it has a child (a label vector
//! nobody has touched yet has neither samples nor HELP/TYPE), so there is nothing else to compare
//! against. That is why the scenario does every kind of thing a panel looks at: a panel whose
//! metric this day does not produce is either dead or needs the day extended.

mod common;

use common::media::{TestServer, group, wait_signal};
use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr, LabelModifier, VectorMatchCardinality, VectorSelector};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use switchboard::client::{ClientError, Locator};
use switchboard::config::Bounded;
use switchboard::signaling::messages::{CallState, ErrorCode, ServerMessage};

const WAIT: Duration = Duration::from_secs(5);

/// Labels Prometheus adds to every series it scrapes (the target's labels).
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

/// Series Prometheus makes itself for every target, with the target labels only.
const SYNTHETIC_SERIES: [&str; 1] = ["up"];

/// What was scraped: for each series name, its labels and the values seen for each.
#[derive(Debug, Default)]
struct Exposition {
    series: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl Exposition {
    /// Parse the Prometheus text format (only what the checks need: names, labels, values).
    fn parse(text: &str) -> Self {
        let mut series: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
        for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (name, rest) = match line.find(['{', ' ']) {
                Some(i) => line.split_at(i),
                None => panic!("not a sample line: {line}"),
            };
            let labels = series.entry(name.to_owned()).or_default();
            if let Some(body) = rest.strip_prefix('{') {
                let body = &body[..body.rfind('}').expect("closing brace")];
                for (label, value) in parse_label_pairs(body) {
                    labels.entry(label).or_default().insert(value);
                }
            }
        }
        Self { series }
    }

    /// The labels of `name` as Prometheus stores it: the exposed ones plus the target labels.
    fn labels_of(&self, name: &str) -> Option<BTreeMap<String, BTreeSet<String>>> {
        let mut labels =
            if SYNTHETIC_SERIES.contains(&name) { BTreeMap::new() } else { self.series.get(name)?.clone() };
        for l in TARGET_LABELS {
            labels.entry(l.to_owned()).or_default();
        }
        Some(labels)
    }
}

/// `a="x",b="y\"z"` → pairs (values unescaped).
fn parse_label_pairs(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.trim().is_empty() {
            return out;
        }
        assert_eq!(chars.next(), Some('"'), "label value starts with a quote in {body}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.push((name.trim().trim_start_matches(',').trim().to_owned(), value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
}

/// The labels an expression's result carries, as far as the checks can tell.
#[derive(Debug, Clone)]
enum Shape {
    Scalar,
    Vector(BTreeSet<String>),
    /// Already reported (an unknown metric): no further label checks on it.
    Unknown,
}

/// Checks queries against an exposition and collects what is wrong with them.
struct Checker<'a> {
    exposed: &'a Exposition,
    problems: Vec<String>,
    /// Where the query being checked comes from (panel title, alert name).
    at: String,
}

impl<'a> Checker<'a> {
    fn new(exposed: &'a Exposition) -> Self {
        Self { exposed, problems: Vec::new(), at: String::new() }
    }

    fn problem(&mut self, what: String) {
        self.problems.push(format!("{}: {what}", self.at));
    }

    /// Parse and check one PromQL query. Grafana's variables are replaced first: the interval
    /// ones by a duration, the others (used in label matchers) by a match-all regex.
    fn check_promql(&mut self, at: &str, query: &str) {
        self.at = format!("{at}: `{query}`");
        let promql = substitute_grafana_variables(query);
        match parser::parse(&promql) {
            Ok(expr) => {
                self.shape(&expr);
            }
            Err(e) => self.problem(format!("does not parse as PromQL: {e}")),
        }
    }

    /// A template variable query: Grafana's `label_values(selector, label)`, `label_values(label)`,
    /// `query_result(promql)`, or plain PromQL.
    fn check_variable_query(&mut self, at: &str, query: &str) {
        let q = query.trim();
        if let Some(inner) = q.strip_prefix("label_values(").and_then(|r| r.strip_suffix(')')) {
            self.at = format!("{at}: `{query}`");
            match inner.rsplit_once(',') {
                Some((selector, label)) => {
                    let label = label.trim();
                    match parser::parse(&substitute_grafana_variables(selector)) {
                        Ok(expr) => {
                            if let Shape::Vector(labels) = self.shape(&expr)
                                && !labels.contains(label)
                            {
                                self.problem(format!("label `{label}` is not on {selector}"));
                            }
                        }
                        Err(e) => self.problem(format!("selector does not parse: {e}")),
                    }
                }
                None => {
                    let label = inner.trim();
                    let anywhere = TARGET_LABELS.contains(&label)
                        || self.exposed.series.values().any(|labels| labels.contains_key(label));
                    if !anywhere {
                        self.problem(format!("no series has the label `{label}`"));
                    }
                }
            }
        } else if let Some(inner) = q.strip_prefix("query_result(").and_then(|r| r.strip_suffix(')')) {
            self.check_promql(at, inner);
        } else {
            self.check_promql(at, q);
        }
    }

    fn shape(&mut self, expr: &Expr) -> Shape {
        match expr {
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Shape::Scalar,
            Expr::VectorSelector(vs) => self.selector(vs),
            Expr::MatrixSelector(ms) => self.selector(&ms.vs),
            Expr::Paren(p) => self.shape(&p.expr),
            Expr::Unary(u) => self.shape(&u.expr),
            Expr::Subquery(s) => self.shape(&s.expr),
            Expr::Aggregate(a) => {
                if let Some(param) = &a.param {
                    self.shape(param);
                }
                let inner = self.shape(&a.expr);
                let Shape::Vector(inner) = inner else { return inner };
                let op = a.op.to_string();
                let grouping = match &a.modifier {
                    Some(LabelModifier::Include(ls)) => {
                        self.require_labels(&inner, &ls.labels, &format!("{op} by"));
                        ls.labels.iter().cloned().collect()
                    }
                    Some(LabelModifier::Exclude(ls)) => {
                        self.require_labels(&inner, &ls.labels, &format!("{op} without"));
                        inner.iter().filter(|l| !ls.labels.contains(l)).cloned().collect()
                    }
                    None => BTreeSet::new(),
                };
                match op.as_str() {
                    // These select series; they keep every label.
                    "topk" | "bottomk" | "limitk" | "limit_ratio" => Shape::Vector(inner),
                    _ => Shape::Vector(grouping),
                }
            }
            Expr::Call(call) => {
                let shapes: Vec<Shape> = call.args.args.iter().map(|a| self.shape(a)).collect();
                let first_vector = shapes.iter().find(|s| !matches!(s, Shape::Scalar)).cloned();
                match call.func.name {
                    "time" | "scalar" | "pi" => Shape::Scalar,
                    "vector" | "absent" | "absent_over_time" => Shape::Vector(BTreeSet::new()),
                    "histogram_quantile" | "histogram_fraction" => match first_vector {
                        Some(Shape::Vector(mut labels)) => {
                            if !labels.remove("le") {
                                self.problem(format!("{} over series without an `le` label", call.func.name));
                            }
                            Shape::Vector(labels)
                        }
                        other => other.unwrap_or(Shape::Unknown),
                    },
                    "label_replace" | "label_join" => match first_vector {
                        Some(Shape::Vector(mut labels)) => {
                            let strings: Vec<String> = call
                                .args
                                .args
                                .iter()
                                .filter_map(|a| match a.as_ref() {
                                    Expr::StringLiteral(s) => Some(s.val.clone()),
                                    _ => None,
                                })
                                .collect();
                            let sources: &[String] = if call.func.name == "label_replace" {
                                strings.get(2..3).unwrap_or(&[])
                            } else {
                                strings.get(2..).unwrap_or(&[])
                            };
                            self.require_labels(&labels, sources, call.func.name);
                            if let Some(dst) = strings.first() {
                                labels.insert(dst.clone());
                            }
                            Shape::Vector(labels)
                        }
                        other => other.unwrap_or(Shape::Unknown),
                    },
                    _ => first_vector.unwrap_or(Shape::Scalar),
                }
            }
            Expr::Binary(b) => {
                let lhs = self.shape(&b.lhs);
                let rhs = self.shape(&b.rhs);
                let (Shape::Vector(l), Shape::Vector(r)) = (&lhs, &rhs) else {
                    return match (lhs, rhs) {
                        (Shape::Unknown, _) | (_, Shape::Unknown) => Shape::Unknown,
                        (Shape::Scalar, other) | (other, Shape::Scalar) => other,
                        _ => unreachable!("both vectors handled below"),
                    };
                };
                let modifier = b.modifier.as_ref();
                let op = b.op.to_string();
                match modifier.and_then(|m| m.matching.as_ref()) {
                    Some(LabelModifier::Include(on)) => {
                        self.require_labels(l, &on.labels, &format!("left of `{op} on`"));
                        self.require_labels(r, &on.labels, &format!("right of `{op} on`"));
                    }
                    Some(LabelModifier::Exclude(ignoring)) => {
                        let l: BTreeSet<_> = l.iter().filter(|x| !ignoring.labels.contains(x)).collect();
                        let r: BTreeSet<_> = r.iter().filter(|x| !ignoring.labels.contains(x)).collect();
                        if l != r && !b.op.is_set_operator() && !is_many_to_one(modifier) {
                            self.problem(format!("`{op} ignoring` sides have different labels {l:?} and {r:?}"));
                        }
                    }
                    None if !b.op.is_set_operator() && l != r => {
                        // One-to-one matching on every label: different label sets match nothing.
                        self.problem(format!("`{op}` sides have different labels {l:?} and {r:?}: no series match"));
                    }
                    None => {}
                }
                let mut out = l.clone();
                if let Some(VectorMatchCardinality::ManyToOne(extra) | VectorMatchCardinality::OneToMany(extra)) =
                    modifier.map(|m| &m.card)
                {
                    self.require_labels(r, &extra.labels, &format!("`{op}` group_left/right"));
                    out.extend(extra.labels.iter().cloned());
                }
                // One-to-one matching keeps only the `on` labels, or drops the `ignoring` ones.
                if !is_many_to_one(modifier) && !b.op.is_set_operator() {
                    match modifier.and_then(|m| m.matching.as_ref()) {
                        Some(LabelModifier::Include(on)) => out = on.labels.iter().cloned().collect(),
                        Some(LabelModifier::Exclude(ignoring)) => out.retain(|l| !ignoring.labels.contains(l)),
                        None => {}
                    }
                }
                Shape::Vector(out)
            }
            Expr::Extension(_) => Shape::Unknown,
        }
    }

    fn selector(&mut self, vs: &VectorSelector) -> Shape {
        let matchers: Vec<_> = vs.matchers.matchers.iter().chain(vs.matchers.or_matchers.iter().flatten()).collect();
        let name = vs.name.clone().or_else(|| {
            matchers.iter().find(|m| m.name == "__name__" && m.op == MatchOp::Equal).map(|m| m.value.clone())
        });
        let Some(name) = name else {
            self.problem("a selector without a metric name".to_owned());
            return Shape::Unknown;
        };
        let Some(labels) = self.exposed.labels_of(&name) else {
            self.problem(format!("metric `{name}` is not exposed by /metrics"));
            return Shape::Unknown;
        };
        for m in matchers.iter().filter(|m| m.name != "__name__") {
            let Some(values) = labels.get(&m.name) else {
                self.problem(format!("`{name}` has no label `{}`", m.name));
                continue;
            };
            if TARGET_LABELS.contains(&m.name.as_str()) {
                continue;
            }
            let wanted: Vec<&str> = match &m.op {
                MatchOp::Equal => vec![m.value.as_str()],
                MatchOp::Re(_) if is_plain_alternation(&m.value) => m.value.split('|').collect(),
                _ => Vec::new(),
            };
            for w in wanted.into_iter().filter(|w| !values.contains(*w)) {
                self.problem(format!("`{name}` never had {}=\"{w}\" (seen: {values:?})", m.name));
            }
        }
        Shape::Vector(labels.into_keys().collect())
    }

    fn require_labels(&mut self, have: &BTreeSet<String>, wanted: &[String], what: &str) {
        for w in wanted.iter().filter(|w| !have.contains(*w)) {
            self.problem(format!("{what} ({w}): the series have no label `{w}` (they have {have:?})"));
        }
    }
}

fn is_many_to_one(m: Option<&parser::BinModifier>) -> bool {
    matches!(m.map(|m| &m.card), Some(VectorMatchCardinality::ManyToOne(_) | VectorMatchCardinality::OneToMany(_)))
}

/// `a|b_c|d` with nothing but word characters: a list of exact values.
fn is_plain_alternation(re: &str) -> bool {
    !re.is_empty()
        && re.split('|').all(|alt| !alt.is_empty() && alt.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

/// Grafana's interval variables become a duration; other variables (in label matchers) match
/// anything.
fn substitute_grafana_variables(query: &str) -> String {
    let mut out = query.to_owned();
    for v in ["${__rate_interval}", "$__rate_interval", "${__interval}", "$__interval", "${__range}", "$__range"] {
        out = out.replace(v, "5m");
    }
    let mut result = String::with_capacity(out.len());
    let mut chars = out.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            result.push(c);
            continue;
        }
        if chars.peek() == Some(&'{') {
            for c in chars.by_ref() {
                if c == '}' {
                    break;
                }
            }
        } else {
            while chars.peek().is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_') {
                chars.next();
            }
        }
        result.push_str(".*");
    }
    result
}

/// Every query of a Grafana dashboard: (where, query, is a template variable query).
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String, bool)> {
    fn panels(list: &Value, out: &mut Vec<(String, String, bool)>) {
        for panel in list.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("(untitled)");
            for (i, target) in panel["targets"].as_array().into_iter().flatten().enumerate() {
                let expr = target["expr"].as_str().unwrap_or_else(|| panic!("panel {title} target {i} has no expr"));
                out.push((format!("panel \"{title}\" target {i}"), expr.to_owned(), false));
            }
            panels(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dashboard["panels"], &mut out);
    for var in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if var["type"] != "query" {
            continue;
        }
        let name = var["name"].as_str().unwrap_or("?");
        let query = match &var["query"] {
            Value::String(s) => s.clone(),
            q => q["query"].as_str().unwrap_or_else(|| panic!("variable {name} has no query")).to_owned(),
        };
        out.push((format!("variable ${name}"), query, true));
    }
    out
}

/// Every expression of a Prometheus rules file: (where, expr).
fn rule_queries(yaml: &str) -> Vec<(String, String)> {
    #[derive(serde::Deserialize)]
    struct File {
        groups: Vec<Group>,
    }
    #[derive(serde::Deserialize)]
    struct Group {
        name: String,
        rules: Vec<Rule>,
    }
    #[derive(serde::Deserialize)]
    struct Rule {
        alert: Option<String>,
        record: Option<String>,
        expr: String,
    }
    let file: File = serde_norway::from_str(yaml).expect("alerts.yml is a Prometheus rules file");
    let mut out = Vec::new();
    for g in file.groups {
        for r in g.rules {
            let name = r.alert.or(r.record).unwrap_or_default();
            out.push((format!("rule {}/{name}", g.name), r.expr));
        }
    }
    out
}

fn repo_file(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Check the dashboard and the rules against `exposed`; the problems found.
fn check_all(exposed: &Exposition, dashboard: &Value, rules: &str) -> (usize, Vec<String>) {
    let mut checker = Checker::new(exposed);
    let mut count = 0;
    for (at, query, is_variable) in dashboard_queries(dashboard) {
        count += 1;
        if is_variable {
            checker.check_variable_query(&at, &query);
        } else {
            checker.check_promql(&at, &query);
        }
    }
    for (at, query) in rule_queries(rules) {
        count += 1;
        checker.check_promql(&at, &query);
    }
    (count, checker.problems)
}

fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> ErrorCode {
    match r {
        Err(ClientError::Server { code, .. }) => code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// A group call with media on two workers (forwarding, handoffs, NACKs, keyframes, layers).
async fn group_call_with_media(ts: &TestServer) {
    let (mut a, mut b) = ts.pair_on_different_workers(&group()).await;
    a.publish_audio_video().await;
    b.publish_audio_video().await;
    assert!(a.wait_until(WAIT, |p| p.announced_tracks().len() >= 2).await, "a sees b's tracks");
    assert!(b.wait_until(WAIT, |p| p.announced_tracks().len() >= 2).await, "b sees a's tracks");
    for (p, other) in [(&a, &b), (&b, &a)] {
        for track in [other.audio.as_ref().expect("audio").track_id, other.video.as_ref().expect("video").track_id] {
            p.client.subscribe(track, None, None).await.expect("subscribe");
        }
    }
    let (a, b) = tokio::join!(
        async move {
            a.run(Duration::from_secs(2)).await;
            a
        },
        async move {
            b.run(Duration::from_secs(2)).await;
            b
        }
    );
    for p in [&a, &b] {
        assert_eq!(p.received.len(), 2, "audio and video arrive");
    }
    a.client.leave().await.expect("leave");
    b.client.leave().await.expect("leave");
}

/// A join refused (an unknown call), and a 1:1 call that rings, is answered and hung up.
async fn one_to_one_call(ts: &TestServer) {
    let (ada_raw, ada_token) = ts.identity(&["voip"]).await;
    let (bob_raw, bob_token) = ts.identity(&["voip"]).await;
    let mut ada = ts.client().await;
    ada.register(&ada_token, Some("Ada")).await.expect("register");
    let mut bob = ts.client().await;
    bob.register(&bob_token, Some("Bob")).await.expect("register");
    let unknown = Locator::Call(uuid::Uuid::new_v4().to_string());
    assert_eq!(code(bob.join(None, unknown, None).await), ErrorCode::CallNotFound);

    let call_id = ada.start_call(&[&bob_raw]).await.expect("start call").call_id.expect("call ID");
    let ringing = wait_signal(&mut bob, WAIT, |m| matches!(m, ServerMessage::IncomingCall { .. })).await;
    assert!(matches!(ringing, Some(ServerMessage::IncomingCall { caller, .. }) if caller.identity == ada_raw));
    assert_eq!(bob.accept_call(&call_id).await.expect("accept").state, CallState::Connected);
    bob.hang_up(false).await.expect("hang up");
    let ended = wait_signal(&mut ada, WAIT, |m| {
        matches!(m, ServerMessage::CallStateChanged { state: CallState::Disconnected, .. })
    })
    .await;
    assert!(ended.is_some(), "the call ends for the caller");
}

/// A meeting: the organizer in, one person admitted from the lobby and one rejected; wrong
/// passcodes on another meeting until its limit refuses.
async fn meeting_with_lobby(ts: &TestServer) {
    let (organizer, o_token) = ts.identity(&["voip"]).await;
    let create = |passcode: bool| {
        let body = json!({
            "participants": {"organizer": {"identity": {"user": {"id": organizer}}}},
            "lobbyBypassSettings": {"scope": "organizer"},
            "joinMeetingIdSettings": {"isPasscodeRequired": passcode},
        });
        async move {
            let (status, m) = ts.api.call(Method::POST, "/meetings", Some(body)).await;
            assert_eq!(status, 201, "{m}");
            m
        }
    };
    let meeting = create(false).await;
    let by_id = Locator::Meeting {
        join_meeting_id: meeting["joinMeetingIdSettings"]["joinMeetingId"].as_str().expect("join ID").to_owned(),
        passcode: None,
    };
    let mut org = ts.client().await;
    let j = org.join(Some(&o_token), by_id.clone(), Some("Olga")).await.expect("organizer joins");
    assert_eq!(j.state, CallState::Connected);
    let mut waiting = Vec::new();
    for name in ["Eve", "Mallory"] {
        let (_, token) = ts.identity(&["voip"]).await;
        let c = ts.client().await;
        let j = c.join(Some(&token), by_id.clone(), Some(name)).await.expect("join");
        assert_eq!(j.state, CallState::InLobby);
        waiting.push((c, j.participant_id));
    }
    let listed = wait_signal(
        &mut org,
        WAIT,
        |m| matches!(m, ServerMessage::LobbyUpdated { participants } if participants.len() == 2),
    )
    .await;
    assert!(listed.is_some(), "the organizer sees both waiting");
    org.admit_lobby(&[waiting[0].1], false).await.expect("admit");
    org.reject_lobby(&[waiting[1].1], false).await.expect("reject");

    let locked = create(true).await;
    let wrong = Locator::Meeting {
        join_meeting_id: locked["joinMeetingIdSettings"]["joinMeetingId"].as_str().expect("join ID").to_owned(),
        passcode: Some("nope".into()),
    };
    let (_, token) = ts.identity(&["voip"]).await;
    let guesser = ts.client().await;
    guesser.register(&token, None).await.expect("register");
    assert_eq!(code(guesser.join(None, wrong.clone(), None).await), ErrorCode::WrongPasscode);
    assert_eq!(code(guesser.join(None, wrong, None).await), ErrorCode::RateLimited);
}

/// An app's callbackUri that answers 503 to the first delivery and 200 after: one retry, then
/// every event delivered (webhook outcomes, retries, latency and queue gauges all get samples).
async fn webhook_deliveries(ts: &TestServer) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    let answered = Arc::new(AtomicU32::new(0));
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post({
            let answered = answered.clone();
            move || async move {
                if answered.fetch_add(1, Ordering::SeqCst) == 0 {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
    let addr = listener.local_addr().expect("receiver address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("the receiver serves") });
    let webhooks = ts.server.webhooks();
    let to = webhooks.validate(&format!("http://{addr}/events")).expect("loopback is allowed by default");
    for n in 0..3 {
        let event = switchboard::webhooks::AcsEvent {
            name: "ParticipantsUpdated",
            subject: "calling/callConnections/dashboard".to_owned(),
            data: json!({"callConnectionId": "dashboard", "sequenceNumber": n}),
        };
        webhooks.publish(&to, "dashboard", event);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while answered.load(Ordering::SeqCst) < 4 {
        assert!(std::time::Instant::now() < deadline, "webhook deliveries did not arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every dashboard panel, template variable and alert rule queries metrics, labels and label
/// values that a real server exposes after a short real day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_query_only_exposed_metrics() {
    let ts = TestServer::start_with(2, |c| {
        c.meetings.wrong_passcodes_per_minute_per_meeting = Bounded::try_from(1).expect("in range");
        c.webhooks.initial_backoff_ms = Bounded::try_from(20).expect("in range");
    })
    .await;
    group_call_with_media(&ts).await;
    one_to_one_call(&ts).await;
    meeting_with_lobby(&ts).await;
    webhook_deliveries(&ts).await;
    // Workers flush their local counters about once a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, text) = ts.api.get_public("/metrics").await;
    assert_eq!(status, 200);
    let exposed = Exposition::parse(&text);
    // The day did what it should (so a missing series below is the dashboard's fault).
    for (series, label, value) in [
        ("switchboard_forwarded_packets_total", "kind", "video"),
        ("switchboard_calls_ended_total", "reason", "hung_up"),
        ("switchboard_lobby_exits_total", "reason", "rejected"),
        ("switchboard_lobby_admissions_total", "how", "admitted"),
        ("switchboard_joins_total", "result", "call_not_found"),
        ("switchboard_webhook_deliveries_total", "result", "delivered"),
        ("switchboard_webhook_delivery_retries_total", "reason", "server_error"),
    ] {
        assert!(exposed.series[series][label].contains(value), "{series}{{{label}=\"{value}\"}}:\n{text}");
    }

    let dashboard: Value =
        serde_json::from_str(&repo_file("deploy/grafana/switchboard.json")).expect("the dashboard is JSON");
    let (count, problems) = check_all(&exposed, &dashboard, &repo_file("deploy/prometheus/alerts.yml"));
    assert!(count > 40, "found only {count} queries: is the dashboard's layout still understood?");
    assert!(problems.is_empty(), "{} dead queries:\n{}\n\nexposed:\n{text}", problems.len(), problems.join("\n"));
    ts.stop().await;
}

/// The checker itself finds each kind of dead query (so a green run means something).
#[test]
fn the_checker_finds_dead_queries() {
    let exposed = Exposition::parse(
        "# TYPE switchboard_media_drops_total counter\n\
         switchboard_media_drops_total{reason=\"inbox_full\"} 0\n\
         switchboard_media_drops_total{reason=\"muted\"} 3\n\
         switchboard_lat_seconds_bucket{le=\"0.1\"} 1\n\
         switchboard_lat_seconds_bucket{le=\"+Inf\"} 1\n\
         switchboard_lat_seconds_sum 0.05\n\
         switchboard_lat_seconds_count 1\n\
         switchboard_process_cpu_seconds_total 12.5\n",
    );
    let good = [
        "sum by (reason) (rate(switchboard_media_drops_total{instance=~\"$instance\"}[$__rate_interval]))",
        "histogram_quantile(0.99, sum by (le, instance) (rate(switchboard_lat_seconds_bucket[5m])))",
        "rate(switchboard_media_drops_total{reason=~\"inbox_full|muted\"}[5m]) > 0",
        "sum by (instance) (rate(switchboard_process_cpu_seconds_total[5m])) / sum by (instance) (rate(switchboard_media_drops_total[5m]))",
        "up{job=\"switchboard\"} == 0",
    ];
    let bad = [
        ("rate(switchboard_bogus_total[5m])", "not exposed"),
        ("sum by (worker) (rate(switchboard_media_drops_total[5m]))", "no label `worker`"),
        ("switchboard_media_drops_total{kind=\"audio\"}", "has no label `kind`"),
        ("switchboard_media_drops_total{reason=\"inbox_ful\"}", "never had reason=\"inbox_ful\""),
        ("switchboard_media_drops_total{reason=~\"muted|socket_busy\"}", "never had reason=\"socket_busy\""),
        ("histogram_quantile(0.9, sum(rate(switchboard_lat_seconds_bucket[5m])))", "without an `le`"),
        (
            "rate(switchboard_process_cpu_seconds_total[5m]) / sum(rate(switchboard_media_drops_total[5m]))",
            "no series match",
        ),
        ("sum(rate(switchboard_media_drops_total[5m]) by (reason", "does not parse"),
    ];
    for q in good {
        let mut c = Checker::new(&exposed);
        c.check_promql("good", q);
        assert!(c.problems.is_empty(), "{q}: {:?}", c.problems);
    }
    for (q, why) in bad {
        let mut c = Checker::new(&exposed);
        c.check_promql("bad", q);
        assert!(c.problems.iter().any(|p| p.contains(why)), "{q} should be refused with '{why}': {:?}", c.problems);
    }
    let mut c = Checker::new(&exposed);
    c.check_variable_query("var", "label_values(switchboard_process_cpu_seconds_total, instance)");
    c.check_variable_query("var", "label_values(switchboard_media_drops_total, reason)");
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    c.check_variable_query("var", "label_values(switchboard_media_drops_total, worker)");
    c.check_variable_query("var", "label_values(nothing_has_this)");
    assert_eq!(c.problems.len(), 2, "{:?}", c.problems);
}
