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

use super::error::{AcsError, AcsErrorResponse};
use super::extract::{AcsJson, SupportedVersions, Versioned};
use super::identities::blocking;
use super::openapi::{AllowedPresentersName, LobbyBypassScopeName, MeetingRoleName, RawId};
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
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// API versions of the Meetings API. Graph has none; this one names the shape defined here.
pub struct MeetingsApi;

impl SupportedVersions for MeetingsApi {
    const VERSIONS: &'static [&'static str] = &["2025-01-01"];
    const DEFAULT: Option<&'static str> = Some("2025-01-01");
}

type Version = Versioned<MeetingsApi>;

/// The query parameter of a `@odata.nextLink` that carries where the next page starts (Graph's).
const PAGE_TOKEN: &str = "$skiptoken";

/// A meeting to create (`POST`: `participants.organizer` is required) or the changes to make
/// (`PATCH`: absent or `null` leaves a setting as it is). Graph `onlineMeeting`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeetingBody {
    #[serde(default)]
    subject: Option<String>,
    /// Default: now.
    #[serde(default)]
    #[schema(format = DateTime)]
    start_date_time: Option<String>,
    /// Default: an hour after the start; needs a start.
    #[serde(default)]
    #[schema(format = DateTime)]
    end_date_time: Option<String>,
    #[serde(default)]
    participants: Option<Participants>,
    #[serde(default)]
    lobby_bypass_settings: Option<LobbyBypassSettings>,
    #[serde(default)]
    #[schema(value_type = Option<AllowedPresentersName>)]
    allowed_presenters: Option<String>,
    #[serde(default)]
    join_meeting_id_settings: Option<JoinMeetingIdSettings>,
}

/// Graph `meetingParticipants`.
#[derive(Deserialize, ToSchema)]
pub struct Participants {
    /// Required on create; in a PATCH it can only be the current organizer.
    #[serde(default)]
    organizer: Option<ParticipantInfo>,
    /// In a PATCH, replaces the whole list.
    #[serde(default)]
    attendees: Option<Vec<ParticipantInfo>>,
}

/// Graph `meetingParticipantInfo` (`upn` and display names are accepted and not kept).
#[derive(Deserialize, ToSchema)]
#[schema(as = MeetingParticipantInfoRequest)]
pub struct ParticipantInfo {
    #[serde(default)]
    identity: Option<IdentitySet>,
    /// Absent: `attendee`; the organizer's is always `presenter`.
    #[serde(default)]
    #[schema(value_type = Option<MeetingRoleName>)]
    role: Option<String>,
}

/// Graph `identitySet`: only `user` names a participant here.
#[derive(Deserialize, ToSchema)]
#[schema(as = IdentitySetRequest)]
pub struct IdentitySet {
    #[serde(default)]
    user: Option<Identity>,
}

#[derive(Deserialize, ToSchema)]
#[schema(as = IdentityRequest)]
pub struct Identity {
    /// The raw ID of a communication user of this server.
    #[serde(default)]
    #[schema(value_type = Option<RawId>)]
    id: Option<String>,
}

/// Graph `lobbyBypassSettings`; in a PATCH an absent member keeps its value.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LobbyBypassSettings {
    /// Default: `organization`.
    #[serde(default)]
    #[schema(value_type = Option<LobbyBypassScopeName>)]
    scope: Option<String>,
    /// Default: false.
    #[serde(default)]
    is_dial_in_bypass_enabled: Option<bool>,
}

/// Graph `joinMeetingIdSettings`: `joinMeetingId` and `passcode` are the server's to choose
/// (anything but `null` there is refused).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = JoinMeetingIdSettingsRequest)]
pub struct JoinMeetingIdSettings {
    /// Default: false. Cannot change in a PATCH.
    #[serde(default)]
    is_passcode_required: Option<bool>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    join_meeting_id: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    passcode: Option<Value>,
}

/// A meeting as Graph shows an `onlineMeeting`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnlineMeeting {
    #[schema(format = "uuid")]
    id: String,
    #[schema(format = DateTime)]
    creation_date_time: String,
    #[schema(format = DateTime)]
    start_date_time: String,
    #[schema(format = DateTime)]
    end_date_time: String,
    #[schema(required = true)]
    subject: Option<String>,
    /// `https://HOST/meet/<token>`: opens the call page and joins this meeting.
    join_web_url: String,
    participants: MeetingParticipants,
    lobby_bypass_settings: LobbyBypassSettingsView,
    #[schema(value_type = AllowedPresentersName)]
    allowed_presenters: &'static str,
    join_meeting_id_settings: JoinMeetingIdSettingsView,
}

/// Graph `meetingParticipants` as a meeting shows them.
#[derive(Serialize, ToSchema)]
pub struct MeetingParticipants {
    organizer: MeetingParticipantInfo,
    attendees: Vec<MeetingParticipantInfo>,
}

/// Graph `meetingParticipantInfo`.
#[derive(Serialize, ToSchema)]
pub struct MeetingParticipantInfo {
    identity: UserIdentitySet,
    #[schema(value_type = MeetingRoleName)]
    role: &'static str,
}

/// Graph `identitySet` with its `user`.
#[derive(Serialize, ToSchema)]
pub struct UserIdentitySet {
    user: UserIdentity,
}

#[derive(Serialize, ToSchema)]
pub struct UserIdentity {
    #[schema(value_type = RawId)]
    id: String,
}

/// Graph `lobbyBypassSettings` as a meeting shows them.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LobbyBypassSettingsView {
    #[schema(value_type = LobbyBypassScopeName)]
    scope: &'static str,
    is_dial_in_bypass_enabled: bool,
}

/// Graph `joinMeetingIdSettings` as a meeting shows them.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinMeetingIdSettingsView {
    is_passcode_required: bool,
    /// 12 digits.
    #[schema(pattern = "^[1-9][0-9]{11}$")]
    join_meeting_id: String,
    /// Six characters, exactly when `isPasscodeRequired`.
    #[schema(required = true)]
    passcode: Option<String>,
}

/// A page of meetings, newest first.
#[derive(Serialize, ToSchema)]
pub struct MeetingsCollection {
    value: Vec<OnlineMeeting>,
    /// The absolute URL of the next page.
    #[serde(rename = "@odata.nextLink", skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    next_link: Option<String>,
}

/// Someone waiting in a meeting's lobby.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LobbyParticipant {
    /// The participant ID the signaling protocol uses.
    participant_id: u64,
    identity: UserIdentitySet,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    display_name: Option<String>,
    #[schema(format = DateTime)]
    waiting_since: String,
}

/// Who waits (`GET .../lobby`), or who was admitted or turned away.
#[derive(Serialize, ToSchema)]
pub struct LobbyCollection {
    value: Vec<LobbyParticipant>,
}

/// `POST /meetings`: 201 with the meeting, its join link, join meeting ID and passcode.
#[utoipa::path(
    post, path = "/meetings", operation_id = "Meetings_Create", tag = "meetings",
    params(Version),
    request_body = MeetingBody,
    responses((status = 201, description = "Created", body = OnlineMeeting)),
)]
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
#[utoipa::path(
    get, path = "/meetings", operation_id = "Meetings_List", tag = "meetings",
    params(Version, ("$skiptoken" = Option<String>, Query, description = "Where the next page starts (from `@odata.nextLink`)")),
    responses((status = 200, description = "A page of meetings", body = MeetingsCollection)),
)]
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
    let body = MeetingsCollection {
        value: page.items.iter().map(|m| meeting_json(&s, m)).collect(),
        next_link: page.next.map(|next| next_link(&headers, &uri, &v, &next.token())),
    };
    Ok(axum::Json(body).into_response())
}

/// `GET /meetings/{id}`
#[utoipa::path(
    get, path = "/meetings/{id}", operation_id = "Meetings_Get", tag = "meetings",
    params(Version, ("id" = String, Path, format = "uuid", description = "The meeting ID")),
    responses((status = 200, description = "The meeting", body = OnlineMeeting), (status = 404, description = "No such meeting", body = AcsErrorResponse)),
)]
pub async fn get(State(s): State<AppState>, _v: Version, Path(raw): Path<String>) -> Result<Response, AcsError> {
    let id = parse_meeting_id(&raw)?;
    let state = s.clone();
    let meeting = blocking(move || state.meeting_directory.get(id)).await??.ok_or_else(not_found)?;
    Ok(axum::Json(meeting_json(&s, &meeting)).into_response())
}

/// `PATCH /meetings/{id}`: 200 with the meeting as it is now.
#[utoipa::path(
    patch, path = "/meetings/{id}", operation_id = "Meetings_Update", tag = "meetings",
    params(Version, ("id" = String, Path, format = "uuid", description = "The meeting ID")),
    request_body = Option<MeetingBody>,
    responses((status = 200, description = "The meeting as it is now", body = OnlineMeeting), (status = 404, description = "No such meeting", body = AcsErrorResponse)),
)]
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
#[utoipa::path(
    delete, path = "/meetings/{id}", operation_id = "Meetings_Delete", tag = "meetings",
    params(Version, ("id" = String, Path, format = "uuid", description = "The meeting ID")),
    responses((status = 204, description = "Deleted; its call ends and its lobby empties"), (status = 404, description = "No such meeting", body = AcsErrorResponse)),
)]
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
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LobbyRequest {
    #[serde(default)]
    #[schema(value_type = Vec<RawId>)]
    participants: Vec<String>,
    #[serde(default)]
    all: bool,
}

/// `GET /meetings/{id}/lobby`: who waits in the live meeting's lobby, oldest first (empty when
/// the meeting has no live call).
#[utoipa::path(
    get, path = "/meetings/{id}/lobby", operation_id = "Lobby_List", tag = "meetings",
    params(Version, ("id" = String, Path, format = "uuid", description = "The meeting ID")),
    responses((status = 200, description = "Who waits, oldest first", body = LobbyCollection), (status = 404, description = "No such meeting", body = AcsErrorResponse)),
)]
pub async fn lobby(State(s): State<AppState>, _v: Version, Path(raw): Path<String>) -> Result<Response, AcsError> {
    let id = parse_meeting_id(&raw)?;
    let state = s.clone();
    blocking(move || state.meeting_directory.get(id)).await??.ok_or_else(not_found)?;
    let waiting = s.signaling.rooms.get(&RoomKey::Meeting(id)).map(|r| r.lobby()).unwrap_or_default();
    let value = waiting.iter().map(lobby_json).collect();
    Ok(axum::Json(LobbyCollection { value }).into_response())
}

/// `POST /meetings/{id}/lobby:admit` (`{participants: [rawId...]}` or `{all: true}`): 200 with who
/// was admitted. Those not waiting (any more) are skipped.
#[utoipa::path(
    post, path = "/meetings/{id}/lobby:admit", operation_id = "Lobby_Admit", tag = "meetings",
    params(Version, ("id" = String, Path, format = "uuid", description = "The meeting ID")),
    request_body = LobbyRequest,
    responses((status = 200, description = "Who was let in", body = LobbyCollection), (status = 404, description = "No such meeting", body = AcsErrorResponse)),
)]
pub async fn admit_lobby(
    State(s): State<AppState>,
    _v: Version,
    Path(raw): Path<String>,
    AcsJson(body): AcsJson<LobbyRequest>,
) -> Result<Response, AcsError> {
    lobby_decision(s, &raw, body, true).await
}

/// `POST /meetings/{id}/lobby:reject`: 200 with who was turned away (`LobbyRejected`).
#[utoipa::path(
    post, path = "/meetings/{id}/lobby:reject", operation_id = "Lobby_Reject", tag = "meetings",
    params(Version, ("id" = String, Path, format = "uuid", description = "The meeting ID")),
    request_body = LobbyRequest,
    responses((status = 200, description = "Who was turned away", body = LobbyCollection), (status = 404, description = "No such meeting", body = AcsErrorResponse)),
)]
pub async fn reject_lobby(
    State(s): State<AppState>,
    _v: Version,
    Path(raw): Path<String>,
    AcsJson(body): AcsJson<LobbyRequest>,
) -> Result<Response, AcsError> {
    lobby_decision(s, &raw, body, false).await
}

async fn lobby_decision(s: AppState, raw: &str, body: LobbyRequest, admit: bool) -> Result<Response, AcsError> {
    let id = parse_meeting_id(raw)?;
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
        return Ok(axum::Json(LobbyCollection { value: Vec::new() }).into_response());
    };
    let before: Vec<_> = room.lobby();
    let done = if admit {
        s.signaling.rooms.admit(&room, &whom)
    } else {
        s.signaling.rooms.turn_away(&room, &whom, EndReason::LobbyRejected)
    };
    let value = before.iter().filter(|v| done.iter().any(|d| d.participant == v.participant)).map(lobby_json).collect();
    Ok(axum::Json(LobbyCollection { value }).into_response())
}

fn lobby_json(v: &crate::rooms::LobbyView) -> LobbyParticipant {
    LobbyParticipant {
        participant_id: v.participant.0,
        identity: UserIdentitySet { user: UserIdentity { id: v.raw_id.to_string() } },
        display_name: v.display_name.as_ref().map(|name| name.to_string()),
        waiting_since: super::identities::rfc3339(v.waiting_since_ms / 1000),
    }
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
fn meeting_json(s: &AppState, m: &MeetingRecord) -> OnlineMeeting {
    let participant = |id: IdentityId, role: MeetingRole| MeetingParticipantInfo {
        identity: UserIdentitySet { user: UserIdentity { id: id.raw(&s.resource_id) } },
        role: role.as_str(),
    };
    OnlineMeeting {
        id: m.id.to_string(),
        creation_date_time: timestamp(m.created_at_us),
        start_date_time: timestamp(m.start_us),
        end_date_time: timestamp(m.end_us),
        subject: m.subject.clone(),
        join_web_url: m.join_web_url.clone(),
        participants: MeetingParticipants {
            organizer: participant(m.organizer, MeetingRole::Presenter),
            attendees: m.attendees.iter().map(|(id, role)| participant(*id, *role)).collect(),
        },
        lobby_bypass_settings: LobbyBypassSettingsView {
            scope: m.lobby_bypass_scope.as_str(),
            is_dial_in_bypass_enabled: m.is_dial_in_bypass_enabled,
        },
        allowed_presenters: m.allowed_presenters.as_str(),
        join_meeting_id_settings: JoinMeetingIdSettingsView {
            is_passcode_required: m.is_passcode_required,
            join_meeting_id: m.join_meeting_id.to_string(),
            passcode: m.passcode.clone(),
        },
    }
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
