// The ACS JavaScript SDKs against Switchboard, exactly as an ACS app uses them. Run by
// rooms.test.mjs in a child process, because Node reads NODE_EXTRA_CA_CERTS (the server's CA)
// only at start-up. Exits non-zero with the failed assertion on stderr.
import assert from "node:assert/strict";
import { CommunicationIdentityClient } from "@azure/communication-identity";
import { RoomsClient } from "@azure/communication-rooms";

const cs = process.env.SB_CONNECTION_STRING;
const identity = new CommunicationIdentityClient(cs);
const rooms = new RoomsClient(cs);

const { user: alice, token } = await identity.createUserAndToken(["voip"]);
const bob = await identity.createUser();
assert.match(alice.communicationUserId, /^8:acs:/);
assert.ok(token.length > 100, "a token comes with the user");

const validFrom = new Date();
const validUntil = new Date(Date.now() + 3600_000);
const room = await rooms.createRoom({
  validFrom,
  validUntil,
  pstnDialOutEnabled: true,
  participants: [{ id: alice, role: "Presenter" }, { id: bob }],
});
assert.match(room.id, /^\d{16,18}$/);
assert.equal(room.pstnDialOutEnabled, true);
assert.ok(Math.abs(room.validUntil.getTime() - validUntil.getTime()) < 1000);

const got = await rooms.getRoom(room.id);
assert.equal(got.id, room.id);

const later = new Date(Date.now() + 7200_000);
const updated = await rooms.updateRoom(room.id, { validFrom, validUntil: later, pstnDialOutEnabled: false });
assert.equal(updated.pstnDialOutEnabled, false);
assert.ok(Math.abs(updated.validUntil.getTime() - later.getTime()) < 1000);

const listed = [];
for await (const r of rooms.listRooms()) listed.push(r.id);
assert.ok(listed.includes(room.id), "listRooms finds the room");

const roles = async () => {
  const out = {};
  for await (const p of rooms.listParticipants(room.id)) out[p.id.communicationUserId] = p.role;
  return out;
};
assert.deepEqual(await roles(), { [alice.communicationUserId]: "Presenter", [bob.communicationUserId]: "Attendee" });
await rooms.addOrUpdateParticipants(room.id, [{ id: bob, role: "Consumer" }]);
await rooms.removeParticipants(room.id, [alice]);
assert.deepEqual(await roles(), { [bob.communicationUserId]: "Consumer" });

await rooms.deleteRoom(room.id);
await assert.rejects(rooms.getRoom(room.id), (e) => e.statusCode === 404, "a deleted room is gone");

await identity.revokeTokens(alice);
await identity.deleteUser(bob);
console.log(JSON.stringify({ ok: true, room: room.id }));
