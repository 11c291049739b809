// The reference peer: @tus/server with @tus/file-store, as its README sets it up.
// Usage: node tus_peer.mjs <port> <directory>
import http from "node:http";
import { Server } from "@tus/server";
import { FileStore } from "@tus/file-store";

const [port, directory] = process.argv.slice(2);
const tus = new Server({
  path: "/files",
  datastore: new FileStore({ directory }),
  maxSize: 16 * 1024 ** 3,
});
http.createServer((req, res) => tus.handle(req, res)).listen(Number(port), "127.0.0.1", () => {
  console.log(`tus peer listening on ${port}`);
});
