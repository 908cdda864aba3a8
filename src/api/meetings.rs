//! `/meetings`: Switchboard's Teams-style meetings, shaped like Microsoft Graph's `onlineMeeting`
//! (`POST /me/onlineMeetings`, `GET/PATCH/DELETE /me/onlineMeetings/{id}`), signed with ACS HMAC
//! like every management call.
//!
//! Wire facts kept from Graph: property names and enum values (`lobbyBypassSettings.scope`,
//! `allowedPresenters`, participant `role`); participants as `meetingParticipantInfo`
//! (`{identity: {user: {id}}, role}`, here with this server's raw IDs); no `api-version` needed
//! (`2025-01-01` is accepted, other versions refused); a meeting without times starts now and
//! lasts an hour, an end needs a start; `isPasscodeRequired` defaults to false and the passcode is
//! generated (a chosen one is refused); PATCH changes only what Graph lets it change (subject,
//! both times together, the full attendee list, lobby bypass settings, presenters) and refuses a
//! different organizer or `isPasscodeRequired`; other read-only properties in a PATCH body are
//! ignored, so a client may send back what it read. DELETE answers 204, then 404.
//! Lists use `value` and `@odata.nextLink` (token in `$skiptoken`), newest first.

use super::error::AcsError;
use super::extract::{AcsJson, SupportedVersions, Versioned};
use super::identities::blocking;
use super::rooms::{now_us, parse_time, timestamp};
use super::state::AppState;
use crate::identity::IdentityId;
use crate::meeting_directory::{
    AllowedPresenters, LobbyBypassScope, MeetingCursor, MeetingDirectoryError, MeetingId, MeetingRecord,
    MeetingRequest, MeetingRole, MeetingUpdate,
};
use crate::rooms::{EndReason, RoomKey, Whom};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

/// API versions of the Meetings API. Graph has none; this one names the shape defined here.
pub struct MeetingsApi;

impl SupportedVersions for MeetingsApi {
    const VERSIONS: &'static [&'static str] = &["2025-01-01"];
    const DEFAULT: Option<&'static str> = Some("2025-01-01");
}

type Version = Versioned<MeetingsApi>;

/// The query parameter of a `@odata.nextLink` that carries where the next page starts (Graph's).
const PAGE_TOKEN: &str = "$skiptoken";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeetingBody {
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    start_date_time: Option<String>,
    #[serde(default)]
    end_date_time: Option<String>,
    #[serde(default)]
    participants: Option<Participants>,
    #[serde(default)]
    lobby_bypass_settings: Option<LobbyBypassSettings>,
    #[serde(default)]
    allowed_presenters: Option<String>,
    #[serde(default)]
    join_meeting_id_settings: Option<JoinMeetingIdSettings>,
}

/// Graph `meetingParticipants`.
#[derive(Deserialize)]
pub struct Participants {
    #[serde(default)]
    organizer: Option<ParticipantInfo>,
    #[serde(default)]
    attendees: Option<Vec<ParticipantInfo>>,
}

/// Graph `meetingParticipantInfo` (`upn` and display names are accepted and not kept).
#[derive(Deserialize)]
pub struct ParticipantInfo {
    #[serde(default)]
    identity: Option<IdentitySet>,
    #[serde(default)]
    role: Option<String>,
}

/// Graph `identitySet`: only `user` names a participant here.
#[derive(Deserialize)]
pub struct IdentitySet {
    #[serde(default)]
    user: Option<Identity>,
}

#[derive(Deserialize)]
pub struct Identity {
    #[serde(default)]
    id: Option<String>,
}

/// Graph `lobbyBypassSettings`; in a PATCH an absent member keeps its value.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LobbyBypassSettings {
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    is_dial_in_bypass_enabled: Option<bool>,
}

/// Graph `joinMeetingIdSettings`: `joinMeetingId` and `passcode` are the server's to choose.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinMeetingIdSettings {
    #[serde(default)]
    is_passcode_required: Option<bool>,
    #[serde(default)]
    join_meeting_id: Option<Value>,
    #[serde(default)]
    passcode: Option<Value>,
}

/// `POST /meetings`: 201 with the meeting, its join link, join meeting ID and passcode.
pub async fn create(
    State(s): State<AppState>,
    _v: Version,
    AcsJson(body): AcsJson<MeetingBody>,
) -> Result<Response, AcsError> {
    let participants = body.participants.unwrap_or(Participants { organizer: None, attendees: None });
    let organizer_info = participants.organizer.ok_or_else(|| {
        AcsError::bad_argument("a meeting needs an organizer (participants.organizer)", "participants.organizer")
    })?;
    let organizer = organizer(&s, organizer_info)?;
    let attendees = attendees(&s, participants.attendees.unwrap_or_default())?;
    let lobby = body.lobby_bypass_settings;
    let join_settings = body.join_meeting_id_settings;
    if let Some(settings) = &join_settings {
        for (value, field) in [(&settings.join_meeting_id, "joinMeetingId"), (&settings.passcode, "passcode")] {
            if value.as_ref().is_some_and(|v| !v.is_null()) {
                return Err(AcsError::bad_argument(
                    format!("{field} is generated by the server and cannot be chosen"),
                    format!("joinMeetingIdSettings.{field}"),
                ));
            }
        }
    }
    let request = MeetingRequest {
        subject: body.subject,
        start_us: parse_time(body.start_date_time, "startDateTime")?,
        end_us: parse_time(body.end_date_time, "endDateTime")?,
        organizer,
        attendees,
        lobby_bypass_scope: scope(lobby.as_ref())?.unwrap_or_default(),
        is_dial_in_bypass_enabled: lobby.as_ref().and_then(|l| l.is_dial_in_bypass_enabled).unwrap_or(false),
        allowed_presenters: presenters(body.allowed_presenters.as_deref())?.unwrap_or_default(),
        is_passcode_required: join_settings.and_then(|j| j.is_passcode_required).unwrap_or(false),
    };
    let state = s.clone();
    let meeting = blocking(move || state.meeting_directory.create(request, now_us())).await?.map_err(meeting_error)?;
    tracing::debug!(meeting = %meeting.id, "meeting created");
    Ok((StatusCode::CREATED, axum::Json(meeting_json(&s, &meeting))).into_response())
}

/// `GET /meetings`: a page of meetings, newest first.
pub async fn list(
    State(s): State<AppState>,
    v: Version,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Result<Response, AcsError> {
    let token = serde_urlencoded::from_str::<Vec<(String, String)>>(query.as_deref().unwrap_or_default())
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == PAGE_TOKEN)
        .map(|(_, v)| v);
    let after =
        match token {
            None => None,
            Some(token) => Some(MeetingCursor::from_token(&token).ok_or_else(|| {
                AcsError::bad_argument("the $skiptoken is not one this server handed out", PAGE_TOKEN)
            })?),
        };
    let state = s.clone();
    let page = blocking(move || state.meeting_directory.list(after)).await??;
    let mut body = json!({ "value": page.items.iter().map(|m| meeting_json(&s, m)).collect::<Vec<_>>() });
    if let Some(next) = page.next {
        body["@odata.nextLink"] = next_link(&headers, &uri, &v, &next.token()).into();
    }
    Ok(axum::Json(body).into_response())
}

/// `GET /meetings/{id}`
pub async fn get(State(s): State<AppState>, _v: Version, Path(raw): Path<String>) -> Result<Response, AcsError> {
    let id = parse_meeting_id(&raw)?;
    let state = s.clone();
    let meeting = blocking(move || state.meeting_directory.get(id)).await??.ok_or_else(not_found)?;
    Ok(axum::Json(meeting_json(&s, &meeting)).into_response())
}

/// `PATCH /meetings/{id}`: 200 with the meeting as it is now.
pub async fn update(
    State(s): State<AppState>,
    _v: Version,
    Path(raw): Path<String>,
    AcsJson(body): AcsJson<MeetingBody>,
) -> Result<Response, AcsError> {
    let id = parse_meeting_id(&raw)?;
    let (organizer, attendees) = match body.participants {
        None => (None, None),
        Some(p) => {
            (p.organizer.map(|o| organizer(&s, o)).transpose()?, p.attendees.map(|a| attendees(&s, a)).transpose()?)
        }
    };
    let lobby = body.lobby_bypass_settings;
    let update = MeetingUpdate {
        subject: body.subject,
        start_us: parse_time(body.start_date_time, "startDateTime")?,
        end_us: parse_time(body.end_date_time, "endDateTime")?,
        attendees,
        lobby_bypass_scope: scope(lobby.as_ref())?,
        is_dial_in_bypass_enabled: lobby.as_ref().and_then(|l| l.is_dial_in_bypass_enabled),
        allowed_presenters: presenters(body.allowed_presenters.as_deref())?,
        organizer,
        is_passcode_required: body.join_meeting_id_settings.and_then(|j| j.is_passcode_required),
    };
    let state = s.clone();
    let change = blocking(move || state.meeting_directory.update(id, update)).await?.map_err(meeting_error)?;
    // A live meeting decides its next joins by the new settings (under its lock, so no join
    // races the change); who is in stays in, who waits keeps waiting.
    if let Some(room) = s.signaling.rooms.get(&RoomKey::Meeting(id)) {
        room.set_meeting(std::sync::Arc::new(change.new.clone()));
    }
    tracing::debug!(meeting = %id, "meeting updated");
    Ok(axum::Json(meeting_json(&s, &change.new)).into_response())
}

/// `DELETE /meetings/{id}`: 204; 404 when there is no such meeting (as Graph answers).
pub async fn delete(State(s): State<AppState>, _v: Version, Path(raw): Path<String>) -> Result<Response, AcsError> {
    let id = parse_meeting_id(&raw)?;
    let state = s.clone();
    if !blocking(move || state.meeting_directory.delete(id)).await?? {
        return Err(not_found());
    }
    // New joins are refused already (the meeting is gone); end its live call and empty its lobby.
    s.signaling.live.close_room(&RoomKey::Meeting(id), EndReason::RoomDeleted).await.map_err(AcsError::internal)?;
    tracing::debug!(meeting = %id, "meeting deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Whom a lobby request names: raw IDs of identities waiting, or everyone.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LobbyRequest {
    #[serde(default)]
    participants: Vec<String>,
    #[serde(default)]
    all: bool,
}

/// `GET /meetings/{id}/lobby`: who waits in the live meeting's lobby, oldest first (empty when
/// the meeting has no live call).
pub async fn lobby(State(s): State<AppState>, _v: Version, Path(raw): Path<String>) -> Result<Response, AcsError> {
    let id = parse_meeting_id(&raw)?;
    let state = s.clone();
    blocking(move || state.meeting_directory.get(id)).await??.ok_or_else(not_found)?;
    let waiting = s.signaling.rooms.get(&RoomKey::Meeting(id)).map(|r| r.lobby()).unwrap_or_default();
    let value: Vec<Value> = waiting.iter().map(lobby_json).collect();
    Ok(axum::Json(json!({ "value": value })).into_response())
}

/// `POST /meetings/{id}/lobby:admit` (`{participants: [rawId...]}` or `{all: true}`) and
/// `POST /meetings/{id}/lobby:reject`: 200 with who was admitted or turned away. Those not
/// waiting (any more) are skipped.
pub async fn lobby_action(
    State(s): State<AppState>,
    _v: Version,
    Path((raw, action)): Path<(String, String)>,
    AcsJson(body): AcsJson<LobbyRequest>,
) -> Result<Response, AcsError> {
    let id = parse_meeting_id(&raw)?;
    let admit = match action.as_str() {
        "lobby:admit" => true,
        "lobby:reject" => false,
        other => return Err(AcsError::not_found("UnknownOperation", format!("unknown meeting operation '{other}'"))),
    };
    if body.all != body.participants.is_empty() {
        return Err(AcsError::bad_argument("name the participants, or set all to true (not both)", "participants"));
    }
    let mut identities = Vec::with_capacity(body.participants.len());
    for (i, p) in body.participants.iter().enumerate() {
        identities.push(s.meeting_directory.parse_participant(p, format!("participants[{i}]")).map_err(meeting_error)?);
    }
    let state = s.clone();
    blocking(move || state.meeting_directory.get(id)).await??.ok_or_else(not_found)?;
    let whom = if body.all { Whom::All } else { Whom::Identities(identities) };
    let Some(room) = s.signaling.rooms.get(&RoomKey::Meeting(id)) else {
        return Ok(axum::Json(json!({ "value": [] })).into_response());
    };
    let before: Vec<_> = room.lobby();
    let done = if admit {
        s.signaling.rooms.admit(&room, &whom)
    } else {
        s.signaling.rooms.turn_away(&room, &whom, EndReason::LobbyRejected)
    };
    let value: Vec<Value> =
        before.iter().filter(|v| done.iter().any(|d| d.participant == v.participant)).map(lobby_json).collect();
    Ok(axum::Json(json!({ "value": value })).into_response())
}

fn lobby_json(v: &crate::rooms::LobbyView) -> Value {
    let mut out = json!({
        "participantId": v.participant.0,
        "identity": { "user": { "id": v.raw_id.to_string() } },
        "waitingSince": super::identities::rfc3339(v.waiting_since_ms / 1000),
    });
    if let Some(name) = &v.display_name {
        out["displayName"] = name.to_string().into();
    }
    out
}

/// The organizer: its raw ID, and a role that can only be `presenter` (what Graph answers).
fn organizer(s: &AppState, info: ParticipantInfo) -> Result<IdentityId, AcsError> {
    const AT: &str = "participants.organizer";
    if let Some(role) = info.role.as_deref()
        && !role.eq_ignore_ascii_case(MeetingRole::Presenter.as_str())
    {
        return Err(AcsError::bad_argument(
            format!("the organizer's role is always presenter, not '{role}'"),
            format!("{AT}.role"),
        ));
    }
    participant_id(s, info.identity, AT)
}

/// Attendees in order, with their roles (absent or `null`: `attendee`).
fn attendees(s: &AppState, infos: Vec<ParticipantInfo>) -> Result<Vec<(IdentityId, MeetingRole)>, AcsError> {
    let limit = s.meeting_directory.limits().max_attendees;
    if infos.len() > limit {
        return Err(meeting_error(MeetingDirectoryError::TooManyAttendees { count: infos.len(), limit }));
    }
    infos
        .into_iter()
        .enumerate()
        .map(|(i, info)| {
            let at = format!("participants.attendees[{i}]");
            let role = match info.role.as_deref() {
                None => MeetingRole::Attendee,
                Some(name) => {
                    MeetingRole::parse(name).map_err(|e| AcsError::bad_argument(e.to_string(), format!("{at}.role")))?
                }
            };
            Ok((participant_id(s, info.identity, &at)?, role))
        })
        .collect()
}

/// `identity.user.id` of a participant at `at`, parsed as a communication user of this server.
fn participant_id(s: &AppState, identity: Option<IdentitySet>, at: &str) -> Result<IdentityId, AcsError> {
    let missing = |path: &str| {
        AcsError::bad_argument(
            format!("{at}.{path} is required: participants are named by identity.user.id (a raw ID 8:acs:...)"),
            format!("{at}.{path}"),
        )
    };
    let user = identity.ok_or_else(|| missing("identity"))?.user.ok_or_else(|| missing("identity.user"))?;
    let raw = user.id.ok_or_else(|| missing("identity.user.id"))?;
    s.meeting_directory.parse_participant(&raw, format!("{at}.identity.user.id")).map_err(meeting_error)
}

fn scope(lobby: Option<&LobbyBypassSettings>) -> Result<Option<LobbyBypassScope>, AcsError> {
    lobby
        .and_then(|l| l.scope.as_deref())
        .map(|name| {
            LobbyBypassScope::parse(name)
                .map_err(|e| AcsError::bad_argument(e.to_string(), "lobbyBypassSettings.scope"))
        })
        .transpose()
}

fn presenters(value: Option<&str>) -> Result<Option<AllowedPresenters>, AcsError> {
    value
        .map(|name| {
            AllowedPresenters::parse(name).map_err(|e| AcsError::bad_argument(e.to_string(), "allowedPresenters"))
        })
        .transpose()
}

fn parse_meeting_id(raw: &str) -> Result<MeetingId, AcsError> {
    MeetingId::parse(raw).ok_or_else(|| {
        AcsError::bad_argument(format!("'{raw}' is not a meeting ID (meeting IDs are UUIDs)"), "meetingId")
    })
}

/// A meeting as Graph shows an `onlineMeeting`.
fn meeting_json(s: &AppState, m: &MeetingRecord) -> Value {
    let participant = |id: IdentityId, role: MeetingRole| json!({ "identity": { "user": { "id": id.raw(&s.resource_id) } }, "role": role.as_str() });
    json!({
        "id": m.id.to_string(),
        "creationDateTime": timestamp(m.created_at_us),
        "startDateTime": timestamp(m.start_us),
        "endDateTime": timestamp(m.end_us),
        "subject": m.subject,
        "joinWebUrl": m.join_web_url,
        "participants": {
            "organizer": participant(m.organizer, MeetingRole::Presenter),
            "attendees": m.attendees.iter().map(|(id, role)| participant(*id, *role)).collect::<Vec<_>>(),
        },
        "lobbyBypassSettings": {
            "scope": m.lobby_bypass_scope.as_str(),
            "isDialInBypassEnabled": m.is_dial_in_bypass_enabled,
        },
        "allowedPresenters": m.allowed_presenters.as_str(),
        "joinMeetingIdSettings": {
            "isPasscodeRequired": m.is_passcode_required,
            "joinMeetingId": m.join_meeting_id.to_string(),
            "passcode": m.passcode,
        },
    })
}

/// The absolute URL of the next page, on the host the client used, with its `api-version`.
fn next_link(headers: &HeaderMap, uri: &Uri, v: &Version, token: &str) -> String {
    let query = serde_urlencoded::to_string([("api-version", v.0.0.as_str()), (PAGE_TOKEN, token)])
        .expect("encoding string pairs cannot fail");
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    match host {
        Some(host) => format!("https://{host}{}?{query}", uri.path()),
        None => format!("{}?{query}", uri.path()),
    }
}

fn not_found() -> AcsError {
    AcsError::not_found("NotFound", "the meeting does not exist")
}

fn meeting_error(e: MeetingDirectoryError) -> AcsError {
    match e {
        MeetingDirectoryError::MeetingNotFound => not_found(),
        MeetingDirectoryError::Store(e) => AcsError::internal(e),
        MeetingDirectoryError::Random => AcsError::internal("the system random generator failed"),
        other => {
            let target = other.target().unwrap_or_else(|| "body".to_owned());
            AcsError::bad_argument(other.to_string(), target)
        }
    }
}
