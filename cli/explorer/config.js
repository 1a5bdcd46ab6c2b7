// Where the explorer finds the knowledge API, and how it signs its calls (docs/auth.md).
// Served by `kb serve`: the same origin's /v1, signed with fixed local credentials (the local server
// checks only that a signature is present). Deployed as a static site: set apiBase to the stack's
// KnowledgeApiUrl output and credentials to a function returning the caller's temporary AWS credentials
// (for example from a Cognito identity pool); apiKey when the stack has ApiKeyRequired=true.
window.EXPLORER_CONFIG = {
  apiBase: "/v1",
  region: "us-east-1",
  apiKey: null,
  credentials: async () => ({ accessKeyId: "local", secretAccessKey: "local", sessionToken: null }),
};
