// The lab's small node app: answers every request on port 3000 (PORT to change it).
const http = require("http");
const os = require("os");
const port = Number(process.env.PORT || 3000);
http
  .createServer((req, res) => {
    res.writeHead(200, { "Content-Type": "text/plain" });
    res.end(`Hello from node-app on ${os.hostname()}: ${req.method} ${req.url}\n`);
  })
  .listen(port, () => console.log(`node-app listening on port ${port}`));
