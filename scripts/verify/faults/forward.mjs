// Runs inside a network namespace the checker made (`ip netns exec <ns> node forward.mjs
// <socket> <port>`): every connection to the Unix socket <socket> is piped to
// 127.0.0.1:<port> in the namespace. Unix sockets live in the file system, which the
// namespaces share, so the checker reaches a process in a namespace without any route
// into it; partitions drop traffic between the namespaces, never on this path.
import { connect, createServer } from "node:net";

const [socket, port] = process.argv.slice(2);
const server = createServer((client) => {
  const upstream = connect({ host: "127.0.0.1", port: Number(port) });
  client.pipe(upstream);
  upstream.pipe(client);
  client.on("error", () => upstream.destroy());
  upstream.on("error", () => client.destroy());
  client.on("close", () => upstream.destroy());
  upstream.on("close", () => client.destroy());
});
server.listen(socket, () => process.stdout.write("ready\n"));
process.on("SIGTERM", () => process.exit(0));
