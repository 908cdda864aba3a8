//! `/calling/...`: ACS Call Automation (`api-version=2024-09-15`; the later versions the SDKs
//! default to are accepted and answered the same way) — call connections and their participants. Wire shapes follow the generated models of the official SDKs
//! (`CreateCallRequest`, `CallConnectionProperties`, `CallParticipant`, ...); the work is done
//! by `call_automation::CallAutomation`.
//!
//! ACS action routes put the action right after a path parameter
//! (`/calling/callConnections/{id}:terminate`), which the router cannot match; `super::router`
//! rewrites such a request path to `{id}/:terminate` before routing (`split_action`), and the
//! signature check reads the path as sent.

use super::error::{AcsError, AcsErrorResponse};
use super::extract::{AcsJson, SupportedVersions, Versioned};
use super::state::AppState;
use crate::call_automation::audio::dtmf::{RecognizeOptions as DtmfRecognizeOptions, Tone};
use crate::call_automation::events::ParticipantState;
use crate::call_automation::{
    AddParticipant, AutomationError, CallConnection, CallLocator as Locator, CreateCall, Play, Recognize,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use uuid::Uuid;

mod wire;
pub use wire::*;

/// API versions of Call Automation this server implements.
pub struct CallAutomationApi;

impl SupportedVersions for CallAutomationApi {
    const VERSIONS: &'static [&'static str] = &["2024-09-15", "2025-05-15", "2025-06-15", "2026-03-12"];
}

type Version = Versioned<CallAutomationApi>;

/// Longest `operationContext` accepted (ACS: 5,000 characters).
const MAX_OPERATION_CONTEXT: usize = 5000;
/// Longest `sourceDisplayName` accepted (the signaling limit for display names).
const MAX_DISPLAY_NAME: usize = 256;
/// Longest `callbackUri`.
const MAX_CALLBACK_URI: usize = 2048;
/// Longest invitation timeout (ACS: 180 s).
const MAX_INVITATION_TIMEOUT: u64 = 180;

/// The ACS error of a call automation failure.
fn automation_error(e: AutomationError) -> AcsError {
    match e {
        AutomationError::BadArgument { field, reason } => AcsError::bad_argument(reason, field),
        AutomationError::ConnectionNotFound => AcsError::not_found("CallConnectionNotFound", e.to_string()),
        AutomationError::ParticipantNotInCall => AcsError::not_found("ParticipantNotFound", e.to_string()),
        AutomationError::InvitationNotFound => AcsError::not_found("InvitationNotFound", e.to_string()),
        AutomationError::AlreadyInCall | AutomationError::NotConnected | AutomationError::Call(_) => {
            AcsError::new(StatusCode::BAD_REQUEST, "BadRequest", e.to_string())
        }
        AutomationError::NotSupported(_) => AcsError::new(StatusCode::BAD_REQUEST, "NotSupported", e.to_string()),
        AutomationError::TooManyQueued => {
            AcsError::new(StatusCode::BAD_REQUEST, "TooManyMediaOperations", e.to_string())
        }
        AutomationError::Control(_) | AutomationError::Leg(_) => AcsError::internal(e),
    }
}

fn check_context(context: &Option<String>) -> Result<(), AcsError> {
    match context {
        Some(c) if c.chars().count() > MAX_OPERATION_CONTEXT => Err(AcsError::bad_argument(
            format!("operationContext is longer than {MAX_OPERATION_CONTEXT} characters"),
            "operationContext",
        )),
        _ => Ok(()),
    }
}

fn parse_connection_id(raw: &str) -> Result<Uuid, AcsError> {
    // Unknown and malformed IDs alike name no connection.
    Uuid::parse_str(raw).map_err(|_| AcsError::not_found("CallConnectionNotFound", "no call connection with this ID"))
}

fn properties(c: &CallConnection) -> CallConnectionProperties {
    CallConnectionProperties {
        call_connection_id: c.id.to_string(),
        server_call_id: c.kind.server_call_id(),
        targets: c.targets.iter().map(|t| CommunicationIdentifier::of(t)).collect(),
        call_connection_state: c.state().as_str(),
        callback_uri: c.callback_uri.as_str().to_owned(),
        source_display_name: c.source_display_name.clone(),
        source: CommunicationIdentifier::of(&c.source_raw_id),
        correlation_id: c.correlation_id.to_string(),
    }
}

fn participant(p: &ParticipantState) -> CallParticipant {
    CallParticipant { identifier: CommunicationIdentifier::of(&p.raw_id), is_muted: p.is_muted, is_on_hold: false }
}

/// `POST /calling/callConnections`: call the targets; they ring like a call from a client.
#[utoipa::path(
    post, path = "/calling/callConnections", operation_id = "CreateCall", tag = "calling",
    params(Version),
    request_body = CreateCallRequest,
    responses((status = 201, description = "The call rings; events follow at the callback URI", body = CallConnectionProperties)),
)]
pub async fn create_call(
    State(s): State<AppState>,
    _v: Version,
    AcsJson(req): AcsJson<CreateCallRequest>,
) -> Result<Response, AcsError> {
    req.missing.refuse()?;
    check_context(&req.operation_context)?;
    let callback_uri =
        req.callback_uri.ok_or_else(|| AcsError::bad_argument("callbackUri is required", "callbackUri"))?;
    if callback_uri.len() > MAX_CALLBACK_URI {
        return Err(AcsError::bad_argument("callbackUri is too long", "callbackUri"));
    }
    if req.source_display_name.as_ref().is_some_and(|n| n.chars().count() > MAX_DISPLAY_NAME) {
        return Err(AcsError::bad_argument(
            format!("sourceDisplayName is longer than {MAX_DISPLAY_NAME} characters"),
            "sourceDisplayName",
        ));
    }
    let targets = req.targets.iter().map(|t| t.user("targets")).collect::<Result<Vec<_>, _>>()?;
    let create = CreateCall {
        targets,
        callback_uri,
        operation_context: req.operation_context,
        source_display_name: req.source_display_name,
    };
    let conn = s.automation.create_call(create).await.map_err(automation_error)?;
    Ok((StatusCode::CREATED, axum::Json(properties(&conn))).into_response())
}

/// `GET /calling/callConnections/{callConnectionId}`.
#[utoipa::path(
    get, path = "/calling/callConnections/{callConnectionId}", operation_id = "CallConnection_GetCall", tag = "calling",
    params(Version, ("callConnectionId" = String, Path, description = "The call connection ID")),
    responses(
        (status = 200, description = "The call connection", body = CallConnectionProperties),
        (status = 404, description = "No such call connection (or it ended)", body = AcsErrorResponse),
    ),
)]
pub async fn get_call(State(s): State<AppState>, _v: Version, Path(id): Path<String>) -> Result<Response, AcsError> {
    let conn = s.automation.get(parse_connection_id(&id)?).map_err(automation_error)?;
    Ok(axum::Json(properties(&conn)).into_response())
}

/// `DELETE /calling/callConnections/{callConnectionId}`: the server's leg hangs up; the call
/// goes on for the others (a 1:1 call ends when one party is left).
#[utoipa::path(
    delete, path = "/calling/callConnections/{callConnectionId}", operation_id = "CallConnection_HangupCall", tag = "calling",
    params(Version, ("callConnectionId" = String, Path, description = "The call connection ID")),
    responses(
        (status = 204, description = "The server's leg left the call"),
        (status = 404, description = "No such call connection (or it ended)", body = AcsErrorResponse),
    ),
)]
pub async fn hang_up(State(s): State<AppState>, _v: Version, Path(id): Path<String>) -> Result<Response, AcsError> {
    s.automation.hang_up(parse_connection_id(&id)?).await.map_err(automation_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /calling/callConnections/{callConnectionId}:terminate`: end the call for everyone.
#[utoipa::path(
    post, path = "/calling/callConnections/{callConnectionId}:terminate", operation_id = "CallConnection_TerminateCall", tag = "calling",
    params(Version, ("callConnectionId" = String, Path, description = "The call connection ID")),
    responses(
        (status = 204, description = "The call ended for everyone"),
        (status = 404, description = "No such call connection (or it ended)", body = AcsErrorResponse),
    ),
)]
pub async fn terminate(State(s): State<AppState>, _v: Version, Path(id): Path<String>) -> Result<Response, AcsError> {
    s.automation.terminate(parse_connection_id(&id)?).await.map_err(automation_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /calling/callConnections/{callConnectionId}/participants`: everyone in the call but the
/// server's own leg.
#[utoipa::path(
    get, path = "/calling/callConnections/{callConnectionId}/participants", operation_id = "CallConnection_GetParticipants", tag = "calling",
    params(Version, ("callConnectionId" = String, Path, description = "The call connection ID")),
    responses(
        (status = 200, description = "The participants", body = GetParticipantsResponse),
        (status = 404, description = "No such call connection (or it ended)", body = AcsErrorResponse),
    ),
)]
pub async fn participants(
    State(s): State<AppState>,
    _v: Version,
    Path(id): Path<String>,
) -> Result<Response, AcsError> {
    let conn = s.automation.get(parse_connection_id(&id)?).map_err(automation_error)?;
    let value = conn.participants().iter().map(participant).collect();
    Ok(axum::Json(GetParticipantsResponse { value }).into_response())
}

/// `GET /calling/callConnections/{callConnectionId}/participants/{participantRawId}`.
#[utoipa::path(
    get, path = "/calling/callConnections/{callConnectionId}/participants/{participantRawId}", operation_id = "CallConnection_GetParticipant", tag = "calling",
    params(Version, ("callConnectionId" = String, Path, description = "The call connection ID"),
        ("participantRawId" = String, Path, description = "The participant's raw ID")),
    responses(
        (status = 200, description = "The participant", body = CallParticipant),
        (status = 404, description = "No such call connection, or the participant is not in the call", body = AcsErrorResponse),
    ),
)]
pub async fn get_participant(
    State(s): State<AppState>,
    _v: Version,
    Path((id, raw)): Path<(String, String)>,
) -> Result<Response, AcsError> {
    let conn = s.automation.get(parse_connection_id(&id)?).map_err(automation_error)?;
    let found = conn.participants().into_iter().find(|p| p.raw_id == raw);
    let p = found.ok_or_else(|| AcsError::not_found("ParticipantNotFound", "the participant is not in the call"))?;
    Ok(axum::Json(participant(&p)).into_response())
}

/// `POST .../participants:add`: ring an identity into the call.
#[utoipa::path(
    post, path = "/calling/callConnections/{callConnectionId}/participants:add", operation_id = "CallConnection_AddParticipant", tag = "calling",
    params(Version, ("callConnectionId" = String, Path, description = "The call connection ID")),
    request_body = AddParticipantRequest,
    responses(
        (status = 202, description = "The participant rings; AddParticipantSucceeded or AddParticipantFailed follows", body = AddParticipantResponse),
        (status = 404, description = "No such call connection (or it ended)", body = AcsErrorResponse),
    ),
)]
pub async fn add_participant(
    State(s): State<AppState>,
    _v: Version,
    Path(id): Path<String>,
    AcsJson(req): AcsJson<AddParticipantRequest>,
) -> Result<Response, AcsError> {
    let id = parse_connection_id(&id)?;
    check_context(&req.operation_context)?;
    let raw_id = req.participant_to_add.user("participantToAdd")?;
    let timeout = match req.invitation_timeout_in_seconds {
        None => None,
        Some(t) => match u64::try_from(t) {
            Ok(t) if t <= MAX_INVITATION_TIMEOUT => Some(Duration::from_secs(t)),
            _ => {
                return Err(AcsError::bad_argument(
                    format!("invitationTimeoutInSeconds must be 0 to {MAX_INVITATION_TIMEOUT}"),
                    "invitationTimeoutInSeconds",
                ));
            }
        },
    };
    let add = AddParticipant {
        raw_id: raw_id.clone(),
        invitation_timeout: timeout,
        operation_context: req.operation_context,
    };
    let operation_context = add.operation_context.clone();
    let invitation_id = s.automation.add_participant(id, add).await.map_err(automation_error)?;
    let body = AddParticipantResponse {
        participant: participant(&ParticipantState { raw_id, is_muted: false }),
        operation_context,
        invitation_id,
    };
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

/// `POST .../participants:remove`: remove a participant (it is disconnected, `RemovedFromCall`).
#[utoipa::path(
    post, path = "/calling/callConnections/{callConnectionId}/participants:remove", operation_id = "CallConnection_RemoveParticipant", tag = "calling",
    params(Version, ("callConnectionId" = String, Path, description = "The call connection ID")),
    request_body = RemoveParticipantRequest,
    responses(
        (status = 202, description = "Removed; RemoveParticipantSucceeded follows", body = OperationResult),
        (status = 404, description = "No such call connection, or the participant is not in the call", body = AcsErrorResponse),
    ),
)]
pub async fn remove_participant(
    State(s): State<AppState>,
    _v: Version,
    Path(id): Path<String>,
    AcsJson(req): AcsJson<RemoveParticipantRequest>,
) -> Result<Response, AcsError> {
    let id = parse_connection_id(&id)?;
    check_context(&req.operation_context)?;
    let raw_id = req.participant_to_remove.user("participantToRemove")?;
    let operation_context = req.operation_context;
    s.automation.remove_participant(id, &raw_id, operation_context.clone()).await.map_err(automation_error)?;
    Ok((StatusCode::ACCEPTED, axum::Json(OperationResult { operation_context })).into_response())
}

/// `POST .../participants:mute`: mute participants' audio server-side.
#[utoipa::path(
    post, path = "/calling/callConnections/{callConnectionId}/participants:mute", operation_id = "CallConnection_Mute", tag = "calling",
    params(Version, ("callConnectionId" = String, Path, description = "The call connection ID")),
    request_body = MuteParticipantsRequest,
    responses(
        (status = 200, description = "Muted: their audio is no longer forwarded", body = OperationResult),
        (status = 404, description = "No such call connection, or a participant is not in the call", body = AcsErrorResponse),
    ),
)]
pub async fn mute(
    State(s): State<AppState>,
    _v: Version,
    Path(id): Path<String>,
    AcsJson(req): AcsJson<MuteParticipantsRequest>,
) -> Result<Response, AcsError> {
    let id = parse_connection_id(&id)?;
    check_context(&req.operation_context)?;
    let raw_ids =
        req.target_participants.iter().map(|t| t.user("targetParticipants")).collect::<Result<Vec<_>, _>>()?;
    s.automation.mute(id, &raw_ids).await.map_err(automation_error)?;
    Ok(axum::Json(OperationResult { operation_context: req.operation_context }).into_response())
}

/// `POST .../participants:cancelAddParticipant`: stop ringing an invitation.
#[utoipa::path(
    post, path = "/calling/callConnections/{callConnectionId}/participants:cancelAddParticipant", operation_id = "CallConnection_CancelAddParticipant", tag = "calling",
    params(Version, ("callConnectionId" = String, Path, description = "The call connection ID")),
    request_body = CancelAddParticipantRequest,
    responses(
        (status = 202, description = "Cancelled; CancelAddParticipantSucceeded follows", body = CancelAddParticipantResponse),
        (status = 404, description = "No such call connection, or no invitation still ringing with this ID", body = AcsErrorResponse),
    ),
)]
pub async fn cancel_add_participant(
    State(s): State<AppState>,
    _v: Version,
    Path(id): Path<String>,
    AcsJson(req): AcsJson<CancelAddParticipantRequest>,
) -> Result<Response, AcsError> {
    let id = parse_connection_id(&id)?;
    check_context(&req.operation_context)?;
    let operation_context = req.operation_context;
    s.automation
        .cancel_add_participant(id, &req.invitation_id, operation_context.clone())
        .await
        .map_err(automation_error)?;
    let body = CancelAddParticipantResponse { invitation_id: req.invitation_id, operation_context };
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

/// Most play sources one request may name.
const MAX_PLAY_SOURCES: usize = 16;

/// `POST /calling/callConnections/{callConnectionId}:play`: play audio files into the call.
#[utoipa::path(
    post, path = "/calling/callConnections/{callConnectionId}:play", operation_id = "CallMedia_Play", tag = "calling",
    params(Version, ("callConnectionId" = String, Path, description = "The call connection ID")),
    request_body = PlayRequest,
    responses(
        (status = 202, description = "Queued; PlayStarted then PlayCompleted (or PlayFailed, PlayCanceled) follow"),
        (status = 400, description = "A bad source (scheme, host, path), playTo naming someone not in the call, or the call is not connected", body = AcsErrorResponse),
        (status = 404, description = "No such call connection (or it ended)", body = AcsErrorResponse),
    ),
)]
pub async fn play(
    State(s): State<AppState>,
    _v: Version,
    Path(id): Path<String>,
    AcsJson(req): AcsJson<PlayRequest>,
) -> Result<Response, AcsError> {
    let id = parse_connection_id(&id)?;
    check_context(&req.operation_context)?;
    no_operation_callback(&req.operation_callback_uri)?;
    if req.play_sources.is_empty() || req.play_sources.len() > MAX_PLAY_SOURCES {
        return Err(AcsError::bad_argument(format!("1 to {MAX_PLAY_SOURCES} play sources are needed"), "playSources"));
    }
    let sources = req.play_sources.iter().map(|p| p.uri("playSources")).collect::<Result<Vec<_>, _>>()?;
    let play_to = req.play_to.iter().map(|t| t.user("playTo")).collect::<Result<Vec<_>, _>>()?;
    let play = Play {
        sources,
        play_to,
        looped: req.play_options.is_some_and(|o| o.looped),
        interrupt: req.interrupt_call_media_operation,
        operation_context: req.operation_context,
    };
    s.automation.play(id, play).await.map_err(automation_error)?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `POST /calling/callConnections/{callConnectionId}:cancelAllMediaOperations`.
#[utoipa::path(
    post, path = "/calling/callConnections/{callConnectionId}:cancelAllMediaOperations", operation_id = "CallMedia_CancelAllMediaOperations", tag = "calling",
    params(Version, ("callConnectionId" = String, Path, description = "The call connection ID")),
    responses(
        (status = 202, description = "Plays and recognitions are cancelled (PlayCanceled, RecognizeCanceled follow)"),
        (status = 404, description = "No such call connection (or it ended)", body = AcsErrorResponse),
    ),
)]
pub async fn cancel_all_media_operations(
    State(s): State<AppState>,
    _v: Version,
    Path(id): Path<String>,
) -> Result<Response, AcsError> {
    s.automation.cancel_media(parse_connection_id(&id)?).await.map_err(automation_error)?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// An integer option within `range`, or its default.
fn seconds_in(
    value: Option<i64>,
    range: std::ops::RangeInclusive<i64>,
    default: i64,
    field: &str,
) -> Result<i64, AcsError> {
    match value {
        None => Ok(default),
        Some(v) if range.contains(&v) => Ok(v),
        Some(_) => Err(AcsError::bad_argument(format!("{field} must be {} to {}", range.start(), range.end()), field)),
    }
}

fn tones(names: &[String], field: &str) -> Result<Vec<Tone>, AcsError> {
    names.iter().map(|n| n.parse::<Tone>().map_err(|e| AcsError::bad_argument(e.to_string(), field))).collect()
}

/// `POST /calling/callConnections/{callConnectionId}:startContinuousDtmfRecognition`.
#[utoipa::path(
    post, path = "/calling/callConnections/{callConnectionId}:startContinuousDtmfRecognition", operation_id = "CallMedia_StartContinuousDtmfRecognition", tag = "calling",
    params(Version, ("callConnectionId" = String, Path, description = "The call connection ID")),
    request_body = ContinuousDtmfRecognitionRequest,
    responses(
        (status = 200, description = "Listening; each tone is a ContinuousDtmfRecognitionToneReceived event"),
        (status = 404, description = "No such call connection, or the participant is not in the call", body = AcsErrorResponse),
    ),
)]
pub async fn start_continuous_dtmf_recognition(
    State(s): State<AppState>,
    _v: Version,
    Path(id): Path<String>,
    AcsJson(req): AcsJson<ContinuousDtmfRecognitionRequest>,
) -> Result<Response, AcsError> {
    let id = parse_connection_id(&id)?;
    check_context(&req.operation_context)?;
    no_operation_callback(&req.operation_callback_uri)?;
    let target = req.target_participant.user("targetParticipant")?;
    s.automation.start_continuous_dtmf(id, &target, req.operation_context).await.map_err(automation_error)?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /calling/callConnections/{callConnectionId}:stopContinuousDtmfRecognition`.
#[utoipa::path(
    post, path = "/calling/callConnections/{callConnectionId}:stopContinuousDtmfRecognition", operation_id = "CallMedia_StopContinuousDtmfRecognition", tag = "calling",
    params(Version, ("callConnectionId" = String, Path, description = "The call connection ID")),
    request_body = ContinuousDtmfRecognitionRequest,
    responses(
        (status = 200, description = "Stopped; ContinuousDtmfRecognitionStopped follows if it was running"),
        (status = 404, description = "No such call connection", body = AcsErrorResponse),
    ),
)]
pub async fn stop_continuous_dtmf_recognition(
    State(s): State<AppState>,
    _v: Version,
    Path(id): Path<String>,
    AcsJson(req): AcsJson<ContinuousDtmfRecognitionRequest>,
) -> Result<Response, AcsError> {
    let id = parse_connection_id(&id)?;
    check_context(&req.operation_context)?;
    no_operation_callback(&req.operation_callback_uri)?;
    let target = req.target_participant.user("targetParticipant")?;
    s.automation.stop_continuous_dtmf(id, &target, req.operation_context).await.map_err(automation_error)?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /calling/callConnections/{callConnectionId}:recognize` (DTMF).
#[utoipa::path(
    post, path = "/calling/callConnections/{callConnectionId}:recognize", operation_id = "CallMedia_Recognize", tag = "calling",
    params(Version, ("callConnectionId" = String, Path, description = "The call connection ID")),
    request_body = RecognizeRequest,
    responses(
        (status = 202, description = "Recognizing (after the prompt); RecognizeCompleted or RecognizeFailed follows"),
        (status = 400, description = "Bad options, a recognition already running for the participant, or an input type other than dtmf", body = AcsErrorResponse),
        (status = 404, description = "No such call connection, or the participant is not in the call", body = AcsErrorResponse),
    ),
)]
pub async fn recognize(
    State(s): State<AppState>,
    _v: Version,
    Path(id): Path<String>,
    AcsJson(req): AcsJson<RecognizeRequest>,
) -> Result<Response, AcsError> {
    let id = parse_connection_id(&id)?;
    check_context(&req.operation_context)?;
    no_operation_callback(&req.operation_callback_uri)?;
    if req.recognize_input_type != "dtmf" {
        return Err(AcsError::new(
            StatusCode::BAD_REQUEST,
            "NotSupported",
            format!("recognizeInputType {} is not supported (only dtmf)", req.recognize_input_type),
        ));
    }
    let o = req.recognize_options;
    let target = o.target_participant.user("recognizeOptions.targetParticipant")?;
    let silence = seconds_in(o.initial_silence_timeout_in_seconds, 0..=300, 5, "initialSilenceTimeoutInSeconds")?;
    let dtmf = o.dtmf_options.unwrap_or_default();
    let inter_tone = seconds_in(dtmf.inter_tone_timeout_in_seconds, 1..=60, 2, "interToneTimeoutInSeconds")?;
    let max_tones = seconds_in(dtmf.max_tones_to_collect, 1..=60, 1, "maxTonesToCollect")?;
    let stop_tones = tones(&dtmf.stop_tones, "stopTones")?;
    let secs = |n: i64| Duration::from_secs(u64::try_from(n).unwrap_or_default());
    let options = DtmfRecognizeOptions {
        max_tones: usize::try_from(max_tones).unwrap_or(1),
        stop_tones,
        inter_tone_timeout: secs(inter_tone),
        initial_silence_timeout: (silence > 0).then(|| secs(silence)),
    };
    let prompt =
        req.play_prompt.iter().chain(&req.play_prompts).map(|p| p.uri("playPrompt")).collect::<Result<Vec<_>, _>>()?;
    if prompt.len() > MAX_PLAY_SOURCES {
        return Err(AcsError::bad_argument(format!("at most {MAX_PLAY_SOURCES} prompts"), "playPrompts"));
    }
    let recognize = Recognize {
        target,
        options,
        prompt,
        interrupt: req.interrupt_call_media_operation,
        interrupt_prompt: o.interrupt_prompt.unwrap_or(false),
        operation_context: req.operation_context,
    };
    s.automation.recognize(id, recognize).await.map_err(automation_error)?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `POST /calling/callConnections/{callConnectionId}:sendDtmfTones`.
#[utoipa::path(
    post, path = "/calling/callConnections/{callConnectionId}:sendDtmfTones", operation_id = "CallMedia_SendDtmfTones", tag = "calling",
    params(Version, ("callConnectionId" = String, Path, description = "The call connection ID")),
    request_body = SendDtmfTonesRequest,
    responses(
        (status = 202, description = "Sending; SendDtmfTonesCompleted follows", body = OperationResult),
        (status = 400, description = "Unknown tone names, or none, or more than 18", body = AcsErrorResponse),
        (status = 404, description = "No such call connection, or the participant is not in the call", body = AcsErrorResponse),
    ),
)]
pub async fn send_dtmf_tones(
    State(s): State<AppState>,
    _v: Version,
    Path(id): Path<String>,
    AcsJson(req): AcsJson<SendDtmfTonesRequest>,
) -> Result<Response, AcsError> {
    let id = parse_connection_id(&id)?;
    check_context(&req.operation_context)?;
    no_operation_callback(&req.operation_callback_uri)?;
    if req.tones.is_empty() || req.tones.len() > 18 {
        return Err(AcsError::bad_argument("1 to 18 tones are needed", "tones"));
    }
    let tones = tones(&req.tones, "tones")?;
    let target = req.target_participant.user("targetParticipant")?;
    let operation_context = req.operation_context;
    s.automation.send_dtmf_tones(id, tones, &target, operation_context.clone()).await.map_err(automation_error)?;
    Ok((StatusCode::ACCEPTED, axum::Json(OperationResult { operation_context })).into_response())
}

fn check_callback_len(uri: &str) -> Result<(), AcsError> {
    if uri.len() > MAX_CALLBACK_URI {
        return Err(AcsError::bad_argument("callbackUri is too long", "callbackUri"));
    }
    Ok(())
}

/// `POST /calling/callConnections:answer`: answer a call an `IncomingCall` event announced.
#[utoipa::path(
    post, path = "/calling/callConnections:answer", operation_id = "AnswerCall", tag = "calling",
    params(Version),
    request_body = AnswerCallRequest,
    responses(
        (status = 200, description = "Answered; CallConnected follows", body = CallConnectionProperties),
        (status = 400, description = "An unknown context, or the call no longer rings", body = AcsErrorResponse),
    ),
)]
pub async fn answer(
    State(s): State<AppState>,
    _v: Version,
    AcsJson(req): AcsJson<AnswerCallRequest>,
) -> Result<Response, AcsError> {
    req.missing.refuse()?;
    check_context(&req.operation_context)?;
    check_callback_len(&req.callback_uri)?;
    let conn = s
        .automation
        .answer(&req.incoming_call_context, &req.callback_uri, req.operation_context)
        .await
        .map_err(automation_error)?;
    Ok(axum::Json(properties(&conn)).into_response())
}

/// `POST /calling/callConnections:reject`.
#[utoipa::path(
    post, path = "/calling/callConnections:reject", operation_id = "RejectCall", tag = "calling",
    params(Version),
    request_body = RejectCallRequest,
    responses(
        (status = 204, description = "Declined"),
        (status = 400, description = "An unknown context, or the call no longer rings", body = AcsErrorResponse),
    ),
)]
pub async fn reject(
    State(s): State<AppState>,
    _v: Version,
    AcsJson(req): AcsJson<RejectCallRequest>,
) -> Result<Response, AcsError> {
    if let Some(r) = req.call_reject_reason.as_deref()
        && !["none", "busy", "forbidden"].contains(&r)
    {
        return Err(AcsError::bad_argument("callRejectReason is none, busy or forbidden", "callRejectReason"));
    }
    s.automation.reject(&req.incoming_call_context).await.map_err(automation_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /calling/callConnections:redirect`.
#[utoipa::path(
    post, path = "/calling/callConnections:redirect", operation_id = "RedirectCall", tag = "calling",
    params(Version),
    request_body = RedirectCallRequest,
    responses(
        (status = 204, description = "The target rings in the app's place"),
        (status = 400, description = "An unknown context or target, or the call no longer rings", body = AcsErrorResponse),
    ),
)]
pub async fn redirect(
    State(s): State<AppState>,
    _v: Version,
    AcsJson(req): AcsJson<RedirectCallRequest>,
) -> Result<Response, AcsError> {
    let target = req.target.user("target")?;
    s.automation.redirect(&req.incoming_call_context, &target).await.map_err(automation_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /calling/callConnections:connect`: the server's leg joins a group call or a room.
#[utoipa::path(
    post, path = "/calling/callConnections:connect", operation_id = "Connect", tag = "calling",
    params(Version),
    request_body = ConnectRequest,
    responses(
        (status = 200, description = "Connected; CallConnected follows", body = CallConnectionProperties),
        (status = 400, description = "A bad locator, or the room does not admit the call automation identity", body = AcsErrorResponse),
    ),
)]
pub async fn connect(
    State(s): State<AppState>,
    _v: Version,
    AcsJson(req): AcsJson<ConnectRequest>,
) -> Result<Response, AcsError> {
    req.missing.refuse()?;
    check_context(&req.operation_context)?;
    check_callback_len(&req.callback_uri)?;
    let l = req.call_locator;
    let locator = match (l.kind.as_str(), l.group_call_id, l.room_id) {
        ("groupCallLocator", Some(g), _) => Locator::Group(g),
        ("roomCallLocator", _, Some(r)) => Locator::Room(r),
        ("groupCallLocator", None, _) => return Err(AcsError::bad_argument("groupCallId is required", "callLocator")),
        ("roomCallLocator", _, None) => return Err(AcsError::bad_argument("roomId is required", "callLocator")),
        (other, _, _) => {
            return Err(AcsError::new(
                StatusCode::BAD_REQUEST,
                "NotSupported",
                format!("call locators of kind {other} are not supported (groupCallLocator, roomCallLocator)"),
            ));
        }
    };
    let conn =
        s.automation.connect(locator, &req.callback_uri, req.operation_context).await.map_err(automation_error)?;
    Ok(axum::Json(properties(&conn)).into_response())
}

/// Per-operation callback URIs are not supported: every event goes to the connection's.
fn no_operation_callback(uri: &Option<String>) -> Result<(), AcsError> {
    match uri {
        Some(u) if !u.is_empty() => Err(AcsError::new(
            StatusCode::BAD_REQUEST,
            "NotSupported",
            "operationCallbackUri is not supported: events go to the call connection's callbackUri",
        )),
        _ => Ok(()),
    }
}

/// The path an ACS action on a call connection is routed by: `/calling/callConnections/{id}:act`
/// → `/calling/callConnections/{id}/:act` (see the module comment). Other paths: `None`.
pub fn split_action(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/calling/callConnections/")?;
    if rest.contains('/') {
        return None;
    }
    let (id, action) = rest.split_once(':')?;
    (!id.is_empty() && !action.is_empty()).then(|| format!("/calling/callConnections/{id}/:{action}"))
}

/// A route path as the router registers it: an action after a parameter becomes its own segment.
pub fn routed_path(path: &str) -> String {
    path.replace("}:", "}/:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_after_an_id_are_split_into_their_own_segment() {
        assert_eq!(
            split_action("/calling/callConnections/abc:terminate").as_deref(),
            Some("/calling/callConnections/abc/:terminate")
        );
        assert_eq!(split_action("/calling/callConnections/abc"), None);
        assert_eq!(split_action("/calling/callConnections/abc/participants:add"), None);
        assert_eq!(split_action("/calling/callConnections/:x"), None);
        assert_eq!(split_action("/rooms/1:x"), None);
        assert_eq!(
            routed_path("/calling/callConnections/{callConnectionId}:terminate"),
            "/calling/callConnections/{callConnectionId}/:terminate"
        );
        assert_eq!(routed_path("/meetings/{id}/lobby:admit"), "/meetings/{id}/lobby:admit");
    }

    #[test]
    fn identifiers_name_users_by_communication_user_or_raw_id() {
        let by_user: CommunicationIdentifier =
            serde_json::from_value(serde_json::json!({"rawId": "x", "communicationUser": {"id": "8:acs:r_1"}}))
                .expect("json");
        assert_eq!(by_user.user("t").expect("user"), "8:acs:r_1");
        let by_raw: CommunicationIdentifier =
            serde_json::from_value(serde_json::json!({"rawId": "8:acs:r_2"})).expect("json");
        assert_eq!(by_raw.user("t").expect("user"), "8:acs:r_2");
        let phone: CommunicationIdentifier =
            serde_json::from_value(serde_json::json!({"phoneNumber": {"value": "+1"}})).expect("json");
        assert_eq!(phone.user("t").expect_err("phone").status, StatusCode::BAD_REQUEST);
        assert!(CommunicationIdentifier::default().user("t").is_err());
    }
}
