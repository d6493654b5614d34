// The lab's phase 6 API: answers on port 3000 (PORT to change it) with what the database that
// DATABASE_URL names says, asked through psql (the image's postgres client):
//   GET /        {"database", "user", "server", "time"} from the database, as JSON
//   GET /health  "ok" when the database answers, else 503 with psql's message
// A database that cannot be reached is a 503 that says why, never a crash.
const http = require("http");
const { execFile } = require("child_process");
const port = Number(process.env.PORT || 3000);
const url = process.env.DATABASE_URL || "postgres://user@postgres.backend.local/user";

// ask(sql, done): runs one query with psql; done(error, rows as arrays of fields).
function ask(sql, done) {
  const args = [url, "--no-psqlrc", "--tuples-only", "--no-align", "--field-separator=\t", "-c", sql];
  execFile("psql", args, { timeout: 5000, env: { ...process.env, PGCONNECT_TIMEOUT: "3" } }, (err, stdout, stderr) => {
    if (err) return done(new Error((stderr || err.message).trim()));
    done(null, stdout.trim().split("\n").filter(Boolean).map((line) => line.split("\t")));
  });
}

function reply(res, status, body) {
  res.writeHead(status, { "Content-Type": "application/json" });
  res.end(JSON.stringify(body) + "\n");
}

http
  .createServer((req, res) => {
    if (req.url === "/health") {
      return ask("SELECT 1", (err) => (err ? reply(res, 503, { error: err.message }) : reply(res, 200, "ok")));
    }
    if (req.url !== "/") return reply(res, 404, { error: `no such path: ${req.url}` });
    ask("SELECT current_database(), current_user, inet_server_addr(), now()", (err, rows) => {
      if (err) return reply(res, 503, { error: err.message, database_url: url });
      const [database, user, server, time] = rows[0];
      reply(res, 200, { database, user, server, time });
    });
  })
  .listen(port, () => console.log(`node-api listening on port ${port}, database ${url}`));
