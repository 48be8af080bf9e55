/**
 * The reference master in its own process for the bench:
 *   node --import tsx bench/master-child.ts '<ReferenceMasterOptions as JSON>'
 * Emits `ready` with its URL and port, then answers the RPC calls below.
 */
import { createReferenceMaster, type AddMeetingInput, type Fault, type FaultRoute, type ReferenceMasterOptions } from '../reference-master/master.ts';
import { serveRpc } from './rpc.ts';

const options = JSON.parse(process.argv[2] ?? '{}') as ReferenceMasterOptions & { port?: number };
const master = createReferenceMaster(options);
const { url, port } = await master.listen(options.port ?? 0, '127.0.0.1');

const rpc = serveRpc({
  addMeeting: (input: AddMeetingInput) => master.addMeeting(input),
  startMeeting: (id: string) => master.startMeeting(id),
  endMeeting: (id: string) => master.endMeeting(id),
  meeting: (id: string) => master.meeting(id),
  stats: () => master.stats(),
  resetStats: () => master.resetStats(),
  setFault: (route: FaultRoute, fault: Fault | null) => master.setFault(route, fault),
  token: () => master.token(),
  nodes: () => master.nodes(),
});
process.on('SIGTERM', () => {
  void master.close().finally(() => process.exit(0));
});
rpc.emit('ready', { url, port });
