//! `/rooms`: the ACS Rooms API (`api-version=2024-04-15`; also 2023-06-14 and 2025-03-13, which
//! have the same paths and bodies — 2023-06-14 lacks `pstnDialOutEnabled` and 2025-03-13 adds the
//! `Collaborator` role, and this server accepts and returns both in every version, as clients
//! ignore fields they do not know).
//!
//! Wire facts the handlers keep (from the REST spec and recorded ACS responses): room IDs are
//! numeric strings; times are RFC 3339 and keep their sub-second digits; `null` in a PATCH body
//! leaves a setting unchanged, except in participants PATCH where it removes the participant;
//! participants PATCH answers 200 `{}`; DELETE answers 204 also when the room is already gone;
//! lists page with `value` and an absolute `nextLink` the SDKs request (and sign) as is.

use super::error::{AcsError, AcsErrorResponse};
use super::extract::{AcsJson, SupportedVersions, Versioned};
use super::identities::blocking;
use super::openapi::{RawId, RoleName};
use super::state::AppState;
use crate::identity::IdentityId;
use crate::room_directory::{AcsRoomId, RoomCursor, RoomDirectoryError, RoomRecord, RoomRequest, RoomUpdate};
use crate::rooms::{EndReason, Role, RoomKey};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

/// API versions of the Rooms API that this server implements.
pub struct RoomsApi;

impl SupportedVersions for RoomsApi {
    const VERSIONS: &'static [&'static str] = &["2023-06-14", "2024-04-15", "2025-03-13"];
}

type Version = Versioned<RoomsApi>;

/// The query parameter of a `nextLink` that carries where the next page starts (ACS's name).
const PAGE_TOKEN: &str = "nextLink";

/// Participants as requests carry them: raw ID → `{role}`, or `null` (remove, or skip on create).
type ParticipantMap = BTreeMap<String, Option<ParticipantProperties>>;

/// ACS `CreateRoomRequest`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateRoom {
    /// Default: now.
    #[serde(default)]
    #[schema(format = DateTime)]
    valid_from: Option<String>,
    /// Default: 180 days after `validFrom`.
    #[serde(default)]
    #[schema(format = DateTime)]
    valid_until: Option<String>,
    #[serde(default)]
    pstn_dial_out_enabled: Option<bool>,
    /// Raw ID → `{role}`; `null` entries are skipped.
    #[serde(default)]
    #[schema(value_type = Option<ParticipantMapSchema>)]
    participants: Option<ParticipantMap>,
}

/// A merge patch: an absent or `null` field stays as it is (the SDKs send `null` for every
/// setting the caller did not pass).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRoom {
    #[serde(default)]
    #[schema(format = DateTime)]
    valid_from: Option<String>,
    #[serde(default)]
    #[schema(format = DateTime)]
    valid_until: Option<String>,
    #[serde(default)]
    pstn_dial_out_enabled: Option<bool>,
}

/// A merge patch of the participant map: `{role}` adds or changes, `null` removes.
#[derive(Deserialize, ToSchema)]
pub struct UpdateParticipants {
    #[serde(default)]
    #[schema(value_type = Option<ParticipantMapSchema>)]
    participants: Option<ParticipantMap>,
}

#[derive(Deserialize, ToSchema)]
pub struct ParticipantProperties {
    /// Absent or `null`: `Attendee`, the ACS default.
    #[serde(default)]
    #[schema(value_type = Option<RoleName>)]
    role: Option<String>,
}

/// The participant map of a request: raw ID → `{role}` or `null`.
pub struct ParticipantMapSchema;

impl utoipa::PartialSchema for ParticipantMapSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
        let entry = OneOfBuilder::new()
            .item(<ParticipantProperties as utoipa::PartialSchema>::schema())
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .build();
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("Raw ID (`8:acs:<resourceId>_<uuid>`) → `{role}`, or `null`"))
            .additional_properties(Some(Schema::OneOf(entry)))
            .into()
    }
}

impl ToSchema for ParticipantMapSchema {}

/// ACS `RoomModel`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomModel {
    /// A numeric string.
    id: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    valid_from: String,
    #[schema(format = DateTime)]
    valid_until: String,
    pstn_dial_out_enabled: bool,
}

/// A page of rooms, newest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomsCollection {
    value: Vec<RoomModel>,
    /// The absolute URL of the next page, signed and requested as is.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    next_link: Option<String>,
}

/// ACS `RoomParticipant`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomParticipant {
    #[schema(value_type = RawId)]
    raw_id: String,
    #[schema(value_type = RoleName)]
    role: &'static str,
}

/// A page of participants.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantsCollection {
    value: Vec<RoomParticipant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    next_link: Option<String>,
}

/// The empty object a participants PATCH answers, as ACS does.
#[derive(Serialize, ToSchema)]
pub struct ParticipantsUpdated {}

/// `POST /rooms`: 201 with the room. A repeated `Repeatability-Request-ID` returns the room the
/// first request created.
#[utoipa::path(
    post, path = "/rooms", operation_id = "Rooms_Create", tag = "rooms",
    params(
        Version,
        ("Repeatability-Request-ID" = Option<String>, Header, nullable = false, max_length = 128,
            description = "Makes a retried create return the first room (1 to 128 visible ASCII characters)"),
        ("Repeatability-First-Sent" = Option<String>, Header, nullable = false,
            description = "When the first try was sent, an HTTP date; required with Repeatability-Request-ID"),
    ),
    request_body = Option<CreateRoom>,
    responses((status = 201, description = "Created", body = RoomModel,
        headers(("Repeatability-Result" = String, description = "`accepted` when a Repeatability-Request-ID was sent")))),
)]
pub async fn create(
    State(s): State<AppState>,
    _v: Version,
    headers: HeaderMap,
    AcsJson(req): AcsJson<CreateRoom>,
) -> Result<Response, AcsError> {
    let repeatability_id = super::repeatability::request_id(&headers)?;
    let entries: Vec<_> =
        req.participants.unwrap_or_default().into_iter().filter_map(|(raw, p)| Some((raw, p?))).collect();
    let participants = s
        .room_directory
        .parse_participants(entries.into_iter())
        .map_err(room_error)?
        .into_iter()
        .map(|(id, props)| Ok((id, parse_role(&s, id, props.role.as_deref())?)))
        .collect::<Result<_, AcsError>>()?;
    let request = RoomRequest {
        valid_from_us: parse_time(req.valid_from, "validFrom")?,
        valid_until_us: parse_time(req.valid_until, "validUntil")?,
        pstn_dial_out_enabled: req.pstn_dial_out_enabled.unwrap_or(false),
        participants,
        repeatability_id: repeatability_id.clone(),
    };
    let state = s.clone();
    let (room, _created) =
        blocking(move || state.room_directory.create(request, now_us())).await?.map_err(room_error)?;
    let mut response = (StatusCode::CREATED, axum::Json(room_model(&room))).into_response();
    if repeatability_id.is_some() {
        response.headers_mut().insert("repeatability-result", axum::http::HeaderValue::from_static("accepted"));
    }
    Ok(response)
}

/// `GET /rooms`: a page of rooms, newest first.
#[utoipa::path(
    get, path = "/rooms", operation_id = "Rooms_List", tag = "rooms",
    params(Version, ("nextLink" = Option<String>, Query, description = "Where the next page starts (from `nextLink`)")),
    responses((status = 200, description = "A page of rooms", body = RoomsCollection)),
)]
pub async fn list(
    State(s): State<AppState>,
    v: Version,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Result<Response, AcsError> {
    let after = match page_token(query.as_deref()) {
        None => None,
        Some(token) => Some(RoomCursor::from_token(&token).ok_or_else(bad_page_token)?),
    };
    let state = s.clone();
    let page = blocking(move || state.room_directory.list(after)).await??;
    let value = page.items.iter().map(room_model).collect();
    let next_link = page.next.map(|c| next_link(&headers, &uri, &v, &c.token()));
    Ok(axum::Json(RoomsCollection { value, next_link }).into_response())
}

/// `GET /rooms/{id}`
#[utoipa::path(
    get, path = "/rooms/{id}", operation_id = "Rooms_Get", tag = "rooms",
    params(Version, ("id" = String, Path, pattern = "^[1-9][0-9]{0,17}$", description = "The room ID")),
    responses((status = 200, description = "The room", body = RoomModel), (status = 404, description = "No such room", body = AcsErrorResponse)),
)]
pub async fn get(State(s): State<AppState>, _v: Version, Path(raw): Path<String>) -> Result<Response, AcsError> {
    let id = parse_room_id(&raw)?;
    let state = s.clone();
    let room = blocking(move || state.room_directory.get(id)).await??.ok_or_else(not_found)?;
    Ok(axum::Json(room_model(&room)).into_response())
}

/// `PATCH /rooms/{id}`: 200 with the room as it is now.
#[utoipa::path(
    patch, path = "/rooms/{id}", operation_id = "Rooms_Update", tag = "rooms",
    params(Version, ("id" = String, Path, pattern = "^[1-9][0-9]{0,17}$", description = "The room ID")),
    request_body(content = Option<UpdateRoom>, content_type = "application/merge-patch+json"),
    responses((status = 200, description = "The room as it is now", body = RoomModel), (status = 404, description = "No such room", body = AcsErrorResponse)),
)]
pub async fn update(
    State(s): State<AppState>,
    _v: Version,
    Path(raw): Path<String>,
    AcsJson(req): AcsJson<UpdateRoom>,
) -> Result<Response, AcsError> {
    let id = parse_room_id(&raw)?;
    let update = RoomUpdate {
        valid_from_us: parse_time(req.valid_from, "validFrom")?,
        valid_until_us: parse_time(req.valid_until, "validUntil")?,
        pstn_dial_out_enabled: req.pstn_dial_out_enabled,
    };
    let state = s.clone();
    let room = blocking(move || state.room_directory.update(id, update, now_us())).await?.map_err(room_error)?;
    Ok(axum::Json(room_model(&room)).into_response())
}

/// `DELETE /rooms/{id}`: 204, also when the room was already gone (as ACS answers).
#[utoipa::path(
    delete, path = "/rooms/{id}", operation_id = "Rooms_Delete", tag = "rooms",
    params(Version, ("id" = String, Path, pattern = "^[1-9][0-9]{0,17}$", description = "The room ID")),
    responses((status = 204, description = "Deleted (also when it was gone already); joins stop at once")),
)]
pub async fn delete(State(s): State<AppState>, _v: Version, Path(raw): Path<String>) -> Result<Response, AcsError> {
    let id = parse_room_id(&raw)?;
    let state = s.clone();
    let existed = blocking(move || state.room_directory.delete(id)).await??;
    // New joins are refused already (the room is gone from the directory); end its live call.
    s.signaling.live.close_room(&RoomKey::Room(id), EndReason::RoomDeleted).await.map_err(AcsError::internal)?;
    tracing::debug!(room = %id, existed, "room deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /rooms/{id}/participants`: a page of `{rawId, role}`.
#[utoipa::path(
    get, path = "/rooms/{id}/participants", operation_id = "Participants_List", tag = "rooms",
    params(Version, ("id" = String, Path, pattern = "^[1-9][0-9]{0,17}$", description = "The room ID"), ("nextLink" = Option<String>, Query, description = "Where the next page starts (from `nextLink`)")),
    responses((status = 200, description = "A page of participants", body = ParticipantsCollection), (status = 404, description = "No such room", body = AcsErrorResponse)),
)]
pub async fn participants(
    State(s): State<AppState>,
    v: Version,
    Path(raw): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Result<Response, AcsError> {
    let id = parse_room_id(&raw)?;
    let after = match page_token(query.as_deref()) {
        None => None,
        Some(token) => Some(uuid::Uuid::parse_str(&token).map(IdentityId).map_err(|_| bad_page_token())?),
    };
    let state = s.clone();
    let page = blocking(move || state.room_directory.participants(id, after)).await?.map_err(room_error)?;
    let value = page
        .items
        .iter()
        .map(|(identity, role)| RoomParticipant { raw_id: identity.raw(&s.resource_id), role: role.as_str() })
        .collect();
    let next_link = page.next.map(|after| next_link(&headers, &uri, &v, &after.0.to_string()));
    Ok(axum::Json(ParticipantsCollection { value, next_link }).into_response())
}

/// `PATCH /rooms/{id}/participants`: a merge patch of the participant map — `{role}` adds or
/// changes a participant, `null` removes one; all or nothing. 200 `{}`.
#[utoipa::path(
    patch, path = "/rooms/{id}/participants", operation_id = "Participants_Update", tag = "rooms",
    params(Version, ("id" = String, Path, pattern = "^[1-9][0-9]{0,17}$", description = "The room ID")),
    request_body(content = Option<UpdateParticipants>, content_type = "application/merge-patch+json"),
    responses((status = 200, description = "Applied", body = ParticipantsUpdated), (status = 404, description = "No such room", body = AcsErrorResponse)),
)]
pub async fn update_participants(
    State(s): State<AppState>,
    _v: Version,
    Path(raw): Path<String>,
    AcsJson(req): AcsJson<UpdateParticipants>,
) -> Result<Response, AcsError> {
    let id = parse_room_id(&raw)?;
    let entries = req.participants.unwrap_or_default();
    let patch = s
        .room_directory
        .parse_participants(entries.into_iter())
        .map_err(room_error)?
        .into_iter()
        .map(|(identity, props)| match props {
            Some(props) => Ok((identity, Some(parse_role(&s, identity, props.role.as_deref())?))),
            None => Ok((identity, None)),
        })
        .collect::<Result<Vec<_>, AcsError>>()?;
    let state = s.clone();
    let changes = blocking(move || state.room_directory.update_participants(id, patch)).await?.map_err(room_error)?;
    // Connected participants get their new role's capabilities, removed ones leave the call;
    // both are in force on every media worker before this returns.
    s.signaling
        .live
        .apply_participant_changes(id, &changes.changed, &changes.removed)
        .await
        .map_err(AcsError::internal)?;
    tracing::debug!(room = %id, changed = changes.changed.len(), removed = changes.removed.len(), "participants updated");
    Ok(axum::Json(ParticipantsUpdated {}).into_response())
}

fn room_model(r: &RoomRecord) -> RoomModel {
    RoomModel {
        id: r.id.to_string(),
        created_at: timestamp(r.created_at_us),
        valid_from: timestamp(r.valid_from_us),
        valid_until: timestamp(r.valid_until_us),
        pstn_dial_out_enabled: r.pstn_dial_out_enabled,
    }
}

/// The absolute URL of the next page: this request's path with the page token, on the host the
/// client used (so the SDK can request and sign it as is), with the client's `api-version`.
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

fn page_token(query: Option<&str>) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query.unwrap_or_default())
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == PAGE_TOKEN)
        .map(|(_, v)| v)
}

fn bad_page_token() -> AcsError {
    AcsError::bad_argument("the nextLink token is not one this server handed out", PAGE_TOKEN)
}

fn parse_room_id(raw: &str) -> Result<AcsRoomId, AcsError> {
    AcsRoomId::parse(raw).ok_or_else(|| {
        AcsError::bad_argument(format!("'{raw}' is not a room ID (room IDs are numbers of up to 18 digits)"), "roomId")
    })
}

fn parse_role(s: &AppState, identity: IdentityId, role: Option<&str>) -> Result<Role, AcsError> {
    match role {
        None => Ok(Role::Attendee),
        Some(name) => Role::parse(name).map_err(|e| {
            AcsError::bad_argument(e.to_string(), format!("participants.{}.role", identity.raw(&s.resource_id)))
        }),
    }
}

/// An RFC 3339 date-time (any offset) as Unix microseconds; `None` stays `None`.
pub(super) fn parse_time(value: Option<String>, field: &str) -> Result<Option<i64>, AcsError> {
    let Some(text) = value else {
        return Ok(None);
    };
    OffsetDateTime::parse(&text, &Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1000).ok())
        .map(Some)
        .ok_or_else(|| {
            AcsError::bad_argument(
                format!("{field} must be an RFC 3339 date-time such as 2026-05-01T09:00:00Z, not '{text}'"),
                field,
            )
        })
}

/// Unix microseconds as RFC 3339 UTC, with as many sub-second digits as it has
/// (`2026-05-01T09:00:00Z`, `2026-05-01T09:00:00.123456Z`).
pub(super) fn timestamp(us: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

pub(super) fn now_us() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX)
}

fn not_found() -> AcsError {
    AcsError::not_found("NotFound", "the room does not exist")
}

fn room_error(e: RoomDirectoryError) -> AcsError {
    match e {
        RoomDirectoryError::RoomNotFound => not_found(),
        RoomDirectoryError::Store(e) => AcsError::internal(e),
        other => {
            let target = other.target().unwrap_or_else(|| "body".to_owned());
            AcsError::bad_argument(other.to_string(), target)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_with_their_sub_second_digits() {
        for (text, us) in [
            ("2026-05-01T09:00:00Z", 1_777_626_000_000_000),
            ("2026-05-01T09:00:00.5Z", 1_777_626_000_500_000),
            ("2026-05-01T09:00:00.127973Z", 1_777_626_000_127_973),
        ] {
            assert_eq!(parse_time(Some(text.to_owned()), "validFrom"), Ok(Some(us)), "{text}");
            assert_eq!(timestamp(us), text);
        }
        let offset = parse_time(Some("2026-05-01T11:00:00+02:00".to_owned()), "validFrom");
        assert_eq!(offset, Ok(Some(1_777_626_000_000_000)), "any offset, shown as UTC");
        let e = parse_time(Some("tomorrow".to_owned()), "validUntil").expect_err("not a date");
        assert_eq!(e.target.as_deref(), Some("validUntil"));
        assert_eq!(parse_time(None, "validFrom"), Ok(None));
    }
}
