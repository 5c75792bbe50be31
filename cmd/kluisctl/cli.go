package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
	"golang.org/x/term"

	"kluis/backend/store/safetext"
)

const usage = `usage: kluisctl [-url URL] [-token TOKEN] [-o table|json] [-insecure-http] COMMAND [ARGS]

Configuration: KLUIS_URL (default http://127.0.0.1:8080), KLUIS_TOKEN.
A backend on another machine is reached over https://: plain http:// is
refused there (the password and token would travel in clear) unless
-insecure-http is given; http:// to this machine (localhost, 127.0.0.0/8,
::1) is allowed.

Commands:
  login USERNAME                      log in (password from KLUIS_PASSWORD or stdin); prints a session token
  logout                              revoke the current token
  whoami                              show the current user
  password [-keep-api-tokens]         change your own password with a session (current password from KLUIS_PASSWORD, then the new one from KLUIS_NEW_PASSWORD, each else one stdin line); ends your other sessions and, unless kept, your API tokens
  kiosk-pin                           set your own staff PIN for the kiosks with a session (current password from KLUIS_PASSWORD, then the PIN from KLUIS_KIOSK_PIN, each else one stdin line)
  documents list [-state S] [-site S] [-device D] [-limit N] [-all]
  documents show ID                   one document with its history
  documents register -kind K -number N -first F -last L -birth YYYY-MM-DD -lang nl|fr|en|de -site S [-email E] [-mobile M] [-low] [-key IDEMPOTENCY-KEY]
  documents reserve ID [-device D]
  documents unreserve|load|renotify|retrieve|collect ID
  documents reissue ID [-birth YYYY-MM-DD] [-yes]   new codes (the old ones stop working); first check the holder's date of birth: -birth has kluisctl compare it with the document's and make no codes on a mismatch; without it, kluisctl reminds you of the document's; then type the document number to confirm (-yes: no question, for scripts)
  documents cancel ID [-reason TEXT]
  reissue ID [-birth YYYY-MM-DD] [-yes]   same as documents reissue
  sites list
  devices list [-site S]
  devices show ID                     a device with its compartments
  devices mqtt-password ID            set a new MQTT password for the device (admin; printed once)
  devices clear-lockout ID -reason TEXT   lift the device's PIN lockout (backend and device; audited)
  devices layout ID -file F | -reset  set the front the staff console draws (admin): kluisd's layout section, YAML or JSON
  devices service ID -out-of-service=true|false [-reason TEXT]   take the whole device out of service (reason required) or back (technician, admin)
  compartment DEVICE NUMBER -out-of-service=true|false [-reason TEXT]
  open DEVICE NUMBER -reason TEXT     open a compartment remotely (technician, admin)
  alarms list DEVICE                  the device's open alarms, those nobody acknowledged first
  alarms ack DEVICE ALARM-ID [-note TEXT]   acknowledge an open alarm: someone handles it, it stops paging (technician, admin; audited)
  audit verify                        verify the audit hash chain (admin)
  audit list [-subject S] [-limit N]
  users list                          (admin)
  users add -username U -role staff|technician|admin   (password from KLUIS_NEW_PASSWORD or stdin)
  users update ID [-disabled=true|false] [-kiosk-pin] [-badge B]   (-kiosk-pin reads the staff PIN from KLUIS_KIOSK_PIN or stdin)
  users unlock ID [-reason TEXT]      lift the user's login limits at once (admin; audited)
  tokens create NAME [-days N]        create an API token for automation with a session (current password from KLUIS_PASSWORD or stdin; expires after N days, default: the server's)
  tokens list [-user ID] [-active true] [-limit N] [-all]   your tokens, or (admin) those of user ID; -active true: only those neither expired nor revoked (ended ones are listed for 30 days)
  tokens revoke TOKEN-ID [-user ID]   revoke one of your tokens, or (admin) one of user ID's
`

// cli holds the global options and the I/O of one invocation.
type cli struct {
	baseURL string
	token   string
	output  string
	stdin   *bufio.Reader
	// tty is stdin when it is a terminal (nil otherwise): secrets are
	// then read from it with the echo off (readLine).
	tty    *os.File
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	client *http.Client
}

// usageError marks wrong command-line use (exit code 2).
type usageError struct{ msg string }

// Error implements error.
func (e usageError) Error() string { return e.msg }

// apiError is an error answer of the API.
type apiError struct {
	Status  int
	Code    string
	Message string
}

// Error implements error.
func (e *apiError) Error() string {
	return fmt.Sprintf("%s (HTTP %d): %s", e.Code, e.Status, e.Message)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	c := &cli{stdin: bufio.NewReader(stdin), stdout: stdout, stderr: stderr, getenv: getenv,
		client: &http.Client{Timeout: 60 * time.Second}}
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		c.tty = f
	}
	fs := flag.NewFlagSet("kluisctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	def := getenv("KLUIS_URL")
	if def == "" {
		def = "http://127.0.0.1:8080"
	}
	fs.StringVar(&c.baseURL, "url", def, "backend URL (env KLUIS_URL)")
	fs.StringVar(&c.token, "token", getenv("KLUIS_TOKEN"), "bearer token (env KLUIS_TOKEN)")
	fs.StringVar(&c.output, "o", "table", "output: table or json")
	insecure := fs.Bool("insecure-http", false, "allow plain http:// to a backend on another machine (password and token in clear)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "kluisctl: %v\n%s", err, usage)
		return 2
	}
	rest := fs.Args()
	if len(rest) == 0 || rest[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(rest) == 0 {
			return 2
		}
		return 0
	}
	err := clearText(c.baseURL, *insecure)
	if err == nil {
		err = c.dispatch(ctx, rest)
	}
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "kluisctl: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "kluisctl: %v\n", err)
		return 1
	}
}

// clearText refuses a plain http:// backend URL whose host is not this
// machine (a loopback address or localhost) unless insecure: every
// command sends a password or a token. Other URLs are left to the
// request.
func clearText(baseURL string, insecure bool) error {
	u, err := url.Parse(baseURL)
	if err != nil || !strings.EqualFold(u.Scheme, "http") || insecure {
		return nil
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); (err == nil && a.Unmap().IsLoopback()) || strings.EqualFold(host, "localhost") {
		return nil
	}
	return usageError{fmt.Sprintf("refusing to send your password or token in clear over http:// to %s, another machine: use https://, or add -insecure-http if you accept that anyone on the network can read them", u.Host)}
}

func (c *cli) checkOutput() error {
	if c.output != "table" && c.output != "json" {
		return usageError{fmt.Sprintf("-o must be table or json, not %q", c.output)}
	}
	return nil
}

// flags makes a subcommand flag set that also accepts -o.
func (c *cli) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.output, "o", c.output, "output: table or json")
	return fs
}

// parse parses flags that may come before or after the positional arguments.
func parse(fs *flag.FlagSet, args []string, npos int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageError{fmt.Sprintf("%s: %v", fs.Name(), err)}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) != npos {
		return nil, usageError{fmt.Sprintf("%s: want %d argument(s), got %d (see kluisctl help)", fs.Name(), npos, len(pos))}
	}
	return pos, nil
}

func (c *cli) dispatch(ctx context.Context, args []string) error {
	if err := c.checkOutput(); err != nil {
		return err
	}
	cmd, args := args[0], args[1:]
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	switch cmd {
	case "login":
		return c.login(ctx, args)
	case "logout":
		return c.simple(ctx, "DELETE", "/api/v1/sessions/current", args, "logged out")
	case "whoami":
		return c.whoami(ctx, args)
	case "kiosk-pin":
		return c.ownKioskPIN(ctx, args)
	case "password":
		return c.ownPassword(ctx, args)
	case "documents", "docs", "document":
		return c.documents(ctx, sub, tail(args))
	case "reissue":
		return c.docAction(ctx, "reissue", args)
	case "sites":
		if sub != "list" {
			return usageError{"sites: want list"}
		}
		return c.list(ctx, "/api/v1/sites", tail(args), nil, siteCols)
	case "devices", "device":
		switch sub {
		case "list":
			return c.list(ctx, "/api/v1/devices", tail(args), []string{"site"}, deviceCols)
		case "show":
			return c.deviceShow(ctx, tail(args))
		case "mqtt-password":
			return c.devicePassword(ctx, tail(args))
		case "clear-lockout":
			return c.clearLockout(ctx, tail(args))
		case "layout":
			return c.deviceLayout(ctx, tail(args))
		case "service":
			return c.deviceService(ctx, tail(args))
		}
		return usageError{"devices: want list, show, mqtt-password, clear-lockout, layout or service"}
	case "compartment":
		return c.compartment(ctx, args)
	case "open":
		return c.open(ctx, args)
	case "alarms", "alarm":
		switch sub {
		case "list":
			return c.alarmList(ctx, tail(args))
		case "ack":
			return c.alarmAck(ctx, tail(args))
		}
		return usageError{"alarms: want list or ack"}
	case "audit":
		switch sub {
		case "verify":
			return c.auditVerify(ctx, tail(args))
		case "list":
			return c.list(ctx, "/api/v1/audit", tail(args), []string{"subject"}, auditCols)
		}
		return usageError{"audit: want verify or list"}
	case "users":
		switch sub {
		case "list":
			return c.list(ctx, "/api/v1/users", tail(args), nil, userCols)
		case "add":
			return c.userAdd(ctx, tail(args))
		case "update":
			return c.userUpdate(ctx, tail(args))
		case "unlock":
			return c.userUnlock(ctx, tail(args))
		}
		return usageError{"users: want list, add, update or unlock"}
	case "tokens":
		switch sub {
		case "create":
			return c.tokenCreate(ctx, tail(args))
		case "list":
			return c.tokenList(ctx, tail(args))
		case "revoke":
			return c.tokenRevoke(ctx, tail(args))
		}
		return usageError{"tokens: want create, list or revoke"}
	}
	return usageError{fmt.Sprintf("unknown command %q (see kluisctl help)", cmd)}
}

func tail(a []string) []string {
	if len(a) == 0 {
		return nil
	}
	return a[1:]
}

// call sends a request and returns the raw response body of a 2xx answer.
func (c *cli) call(ctx context.Context, method, path string, body any, headers ...string) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := strings.TrimRight(c.baseURL, "/") + path
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("bad URL %q: %w", c.baseURL, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] != "" {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	res, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach %s: %w", c.baseURL, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	if res.StatusCode >= 300 {
		var eb struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(b, &eb) == nil && eb.Error.Code != "" {
			ae := &apiError{Status: res.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
			if res.StatusCode == http.StatusUnauthorized {
				ae.Message += " (log in with kluisctl login and set KLUIS_TOKEN)"
			}
			return nil, ae
		}
		return nil, &apiError{Status: res.StatusCode, Code: "http_error", Message: strings.TrimSpace(string(b))}
	}
	return b, nil
}

// emitJSON pretty-prints raw JSON.
func (c *cli) emitJSON(raw []byte) error {
	var buf bytes.Buffer
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = []byte("{}")
	}
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return fmt.Errorf("bad JSON from server: %w", err)
	}
	buf.WriteByte('\n')
	_, err := c.stdout.Write(escapeJSON(buf.Bytes()))
	return err
}

// escapeJSON writes every character that package safetext refuses in
// names (a bidirectional override, say) as a JSON \u escape: the same JSON
// value, but it cannot reorder or hide text on a terminal. Outside strings
// valid JSON holds no such character except the newlines of the
// indentation, which stay.
func escapeJSON(b []byte) []byte {
	if !bytes.ContainsFunc(b, func(r rune) bool { return r != '\n' && safetext.Refused(r) }) {
		return b
	}
	var out bytes.Buffer
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r == '\n' || !safetext.Refused(r):
			out.Write(b[:n])
		case r > 0xFFFF:
			r1, r2 := utf16Pair(r)
			fmt.Fprintf(&out, `\u%04x\u%04x`, r1, r2)
		default:
			fmt.Fprintf(&out, `\u%04x`, r)
		}
		b = b[n:]
	}
	return out.Bytes()
}

func utf16Pair(r rune) (rune, rune) {
	r -= 0x10000
	return 0xD800 + (r>>10)&0x3FF, 0xDC00 + r&0x3FF
}

// emitOne prints one object from the server: as is with -o json, as a
// one-row table otherwise.
func (c *cli) emitOne(raw []byte, cols []column) error {
	if c.output == "json" {
		return c.emitJSON(raw)
	}
	var v any
	_ = json.Unmarshal(raw, &v)
	return c.table([]any{v}, cols)
}

// column is one table column: a header and a dotted JSON path.
type column struct{ header, path string }

var (
	docCols    = []column{{"ID", "id"}, {"KIND", "kind"}, {"STATE", "state"}, {"HOLDER", "holder_last_name"}, {"SITE", "site_id"}, {"DEVICE", "device_id"}, {"DEADLINE", "deadline"}}
	siteCols   = []column{{"ID", "id"}, {"NAME", "name"}, {"TIME ZONE", "time_zone"}}
	deviceCols = []column{{"ID", "id"}, {"SITE", "site_id"}, {"KIND", "kind"}, {"NAME", "name"}, {"ONLINE", "presence.online"}, {"LAST HEARTBEAT", "presence.last_heartbeat_at"}}
	compCols   = []column{{"NUMBER", "number"}, {"BOARD", "board"}, {"CHANNEL", "channel"}, {"SIZE", "size"}, {"HEIGHT", "height_cm"}, {"STATE", "state"}}
	auditCols  = []column{{"SEQ", "seq"}, {"AT", "at"}, {"ACTOR", "actor"}, {"ACTION", "action"}, {"SUBJECT", "subject"}}
	tokenCols  = []column{{"ID", "id"}, {"KIND", "kind"}, {"NAME", "name"}, {"CREATED", "created_at"}, {"EXPIRES", "expires_at"}, {"REVOKED", "revoked_at"}}
	userCols   = []column{{"ID", "id"}, {"USERNAME", "username"}, {"ROLE", "role"}, {"DISABLED", "disabled"}}
	noteCols   = []column{{"AT", "at"}, {"KIND", "kind"}, {"CHANNEL", "channel"}, {"STATUS", "status"}, {"ERROR", "error"}}
	histCols   = []column{{"AT", "at"}, {"ACTION", "action"}, {"FROM", "from"}, {"TO", "to"}, {"ACTOR", "actor"}}
)

func lookup(v any, path string) any {
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func format(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		if x == "" {
			return "-"
		}
		// Names stored before the rule of package safetext (or by a
		// backend without it) must not reorder or hide table text.
		return safetext.Escape(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	b, _ := json.Marshal(v)
	return string(escapeJSON(b))
}

// checkText refuses, before anything is sent, a name or reason the
// backend would refuse (package safetext, the backend's own rule).
func checkText(what, s string, max int) error {
	if err := safetext.Check(s, max); err != nil {
		return usageError{fmt.Sprintf("%s %s", what, safetext.Reason(err))}
	}
	return nil
}

func (c *cli) table(rows []any, cols []column) error {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	hs := make([]string, len(cols))
	for i, col := range cols {
		hs[i] = col.header
	}
	fmt.Fprintln(tw, strings.Join(hs, "\t"))
	for _, r := range rows {
		vs := make([]string, len(cols))
		for i, col := range cols {
			vs[i] = format(lookup(r, col.path))
		}
		fmt.Fprintln(tw, strings.Join(vs, "\t"))
	}
	return tw.Flush()
}

// keyValues prints selected fields of one object, one per line.
func (c *cli) keyValues(obj any, keys []string) error {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	for _, k := range keys {
		if v := lookup(obj, k); v != nil {
			fmt.Fprintf(tw, "%s:\t%s\n", k, format(v))
		}
	}
	return tw.Flush()
}

// list fetches one page (or, with -all, every page) of a list endpoint.
func (c *cli) list(ctx context.Context, path string, args []string, filters []string, cols []column) error {
	fs := c.flags("list")
	limit := fs.Int("limit", 50, "page size (1-200)")
	all := fs.Bool("all", false, "follow every page")
	fv := map[string]*string{}
	for _, f := range filters {
		fv[f] = fs.String(f, "", "filter on "+f)
	}
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := c.checkOutput(); err != nil {
		return err
	}
	q := url.Values{}
	q.Set("limit", strconv.Itoa(*limit))
	for k, v := range fv {
		if *v != "" {
			q.Set(k, *v)
		}
	}
	next := path + "?" + q.Encode()
	var items []any
	var lastRaw []byte
	for pages := 0; next != "" && pages < 1000; pages++ {
		raw, err := c.call(ctx, "GET", next, nil)
		if err != nil {
			return err
		}
		lastRaw = raw
		var p struct {
			Items []any  `json:"items"`
			Next  string `json:"next"`
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			return fmt.Errorf("bad list from server: %w", err)
		}
		items = append(items, p.Items...)
		next = ""
		if *all {
			next = p.Next
		}
	}
	if c.output == "json" {
		if *all {
			b, _ := json.Marshal(map[string]any{"items": items})
			return c.emitJSON(b)
		}
		return c.emitJSON(lastRaw)
	}
	return c.table(items, cols)
}

func (c *cli) simple(ctx context.Context, method, path string, args []string, msg string) error {
	if _, err := parse(c.flags(path), args, 0); err != nil {
		return err
	}
	if _, err := c.call(ctx, method, path, nil); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, msg)
	return nil
}

// readSecret reads a password from the environment variable or one stdin
// line (readLine).
func (c *cli) readSecret(envVar, prompt string) (string, error) {
	if v := c.getenv(envVar); v != "" {
		return v, nil
	}
	line, err := c.readLine(prompt)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	if line == "" {
		return "", usageError{"empty password"}
	}
	return line, nil
}

// readLine writes prompt on stderr and reads one line of a secret (a
// password, a staff PIN) without its line end: typed at a terminal with
// the echo off, so that it is neither shown to whoever stands behind the
// person nor kept in the terminal's scroll-back; else one stdin line (a
// pipe, a script).
func (c *cli) readLine(prompt string) (string, error) {
	fmt.Fprint(c.stderr, prompt)
	if c.tty != nil {
		b, err := term.ReadPassword(int(c.tty.Fd()))
		fmt.Fprintln(c.stderr) // the Enter typed was not echoed either
		if err != nil {
			return "", err
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	line, err := c.stdin.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func (c *cli) login(ctx context.Context, args []string) error {
	pos, err := parse(c.flags("login"), args, 1)
	if err != nil {
		return err
	}
	pw, err := c.readSecret("KLUIS_PASSWORD", "password: ")
	if err != nil {
		return err
	}
	raw, err := c.call(ctx, "POST", "/api/v1/sessions", map[string]string{"username": pos[0], "password": pw})
	if err != nil {
		return err
	}
	if c.output == "json" {
		return c.emitJSON(raw)
	}
	var iss struct {
		Token     string `json:"token"`
		ExpiresAt string `json:"expires_at"`
	}
	if err := json.Unmarshal(raw, &iss); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "export KLUIS_TOKEN=%s\n", iss.Token)
	fmt.Fprintf(c.stderr, "logged in as %s until %s\n", pos[0], iss.ExpiresAt)
	return nil
}

// ownKioskPIN sets the caller's own staff PIN (POST /api/v1/me/kiosk-pin).
func (c *cli) ownKioskPIN(ctx context.Context, args []string) error {
	if _, err := parse(c.flags("kiosk-pin"), args, 0); err != nil {
		return err
	}
	pw, err := c.readSecret("KLUIS_PASSWORD", "current password: ")
	if err != nil {
		return err
	}
	pin, err := c.readSecret("KLUIS_KIOSK_PIN", "new staff PIN (8-12 digits): ")
	if err != nil {
		return err
	}
	raw, err := c.call(ctx, "POST", "/api/v1/me/kiosk-pin", map[string]string{"current_password": pw, "kiosk_pin": strings.TrimSpace(pin)})
	if err != nil {
		return err
	}
	return c.emitOne(raw, userCols)
}

// ownPassword changes the caller's own password (POST /api/v1/me/password).
func (c *cli) ownPassword(ctx context.Context, args []string) error {
	fs := c.flags("password")
	keep := fs.Bool("keep-api-tokens", false, "keep your API tokens (nobody else knew the old password)")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	pw, err := c.readSecret("KLUIS_PASSWORD", "current password: ")
	if err != nil {
		return err
	}
	npw, err := c.readSecret("KLUIS_NEW_PASSWORD", "new password: ")
	if err != nil {
		return err
	}
	raw, err := c.call(ctx, "POST", "/api/v1/me/password", map[string]any{"current_password": pw, "new_password": npw, "keep_api_tokens": *keep})
	if err != nil {
		return err
	}
	if c.output == "json" {
		return c.emitJSON(raw)
	}
	var ended struct {
		Sessions  int `json:"sessions"`
		APITokens int `json:"api_tokens"`
	}
	if err := json.Unmarshal(raw, &ended); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "password changed; %d other sessions ended, %d API tokens revoked\n", ended.Sessions, ended.APITokens)
	return nil
}

func (c *cli) whoami(ctx context.Context, args []string) error {
	if _, err := parse(c.flags("whoami"), args, 0); err != nil {
		return err
	}
	raw, err := c.call(ctx, "GET", "/api/v1/me", nil)
	if err != nil {
		return err
	}
	if c.output == "json" {
		return c.emitJSON(raw)
	}
	var v any
	_ = json.Unmarshal(raw, &v)
	return c.keyValues(v, []string{"id", "username", "role", "token_kind"})
}

func (c *cli) documents(ctx context.Context, sub string, args []string) error {
	switch sub {
	case "list":
		return c.list(ctx, "/api/v1/documents", args, []string{"state", "site", "device"}, docCols)
	case "show":
		return c.docShow(ctx, args)
	case "register":
		return c.docRegister(ctx, args)
	case "reserve", "unreserve", "load", "renotify", "reissue", "retrieve", "collect", "cancel":
		return c.docAction(ctx, sub, args)
	}
	return usageError{"documents: want list, show, register, reserve, unreserve, load, cancel, renotify, reissue, retrieve or collect"}
}

var docKeys = []string{"id", "kind", "number", "holder_first_name", "holder_last_name", "language", "email", "mobile",
	"site_id", "state", "device_id", "compartment_id", "deadline", "loaded_at", "notified_at", "closed_at", "purged_at", "created_at", "version"}

// reserveWarning says a reservation's warning (code, alarm) in words.
func reserveWarning(code, alarm string) string {
	switch code {
	case "device_never_connected":
		return "has never connected"
	case "device_offline":
		return "is offline"
	case "device_late":
		return "is late with its heartbeat"
	case "device_alarm":
		return "has an open alarm that stops pickups: " + alarm
	}
	return code
}

func (c *cli) printDoc(raw []byte, history bool) error {
	if c.output == "json" {
		return c.emitJSON(raw)
	}
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("bad document from server: %w", err)
	}
	if err := c.keyValues(v, docKeys); err != nil {
		return err
	}
	if w, _ := v["warning"].(string); w != "" {
		// A re-issue at an offline device: the old code still opens
		// there until it reconnects (docs/api.md).
		fmt.Fprintf(c.stderr, "kluisctl: warning: %s\n", w)
	}
	if ws, _ := v["warnings"].([]any); len(ws) > 0 {
		// A reservation on a device that cannot serve now (docs/api.md).
		dev, _ := v["device_id"].(string)
		for _, w := range ws {
			m, _ := w.(map[string]any)
			code, _ := m["code"].(string)
			alarm, _ := m["alarm"].(string)
			fmt.Fprintf(c.stderr, "kluisctl: warning: device %s %s; the holder may not be able to collect there\n", dev, reserveWarning(code, alarm))
		}
	}
	if h, ok := v["history"].([]any); ok && history {
		fmt.Fprintln(c.stdout, "\nhistory:")
		if err := c.table(h, histCols); err != nil {
			return err
		}
	}
	if n, ok := v["notifications"].([]any); ok && history && len(n) > 0 {
		fmt.Fprintln(c.stdout, "\nnotifications:")
		return c.table(n, noteCols)
	}
	return nil
}

func (c *cli) docShow(ctx context.Context, args []string) error {
	pos, err := parse(c.flags("documents show"), args, 1)
	if err != nil {
		return err
	}
	raw, err := c.call(ctx, "GET", "/api/v1/documents/"+url.PathEscape(pos[0]), nil)
	if err != nil {
		return err
	}
	return c.printDoc(raw, true)
}

func (c *cli) docRegister(ctx context.Context, args []string) error {
	fs := c.flags("documents register")
	kind := fs.String("kind", "eid", "eid, kids_id, residence_card, passport or driving_licence")
	number := fs.String("number", "", "document number")
	first := fs.String("first", "", "holder's first name")
	last := fs.String("last", "", "holder's last name")
	birth := fs.String("birth", "", "holder's birth date, YYYY-MM-DD")
	lang := fs.String("lang", "nl", "nl, fr, en or de")
	email := fs.String("email", "", "holder's e-mail")
	mobile := fs.String("mobile", "", "holder's mobile number")
	site := fs.String("site", "", "site id")
	low := fs.Bool("low", false, "the holder needs a low compartment")
	key := fs.String("key", "", "Idempotency-Key (retry safely with the same key)")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	body := map[string]any{"kind": *kind, "number": *number, "holder_first_name": *first, "holder_last_name": *last,
		"holder_birth_date": *birth, "language": *lang, "email": *email, "mobile": *mobile, "site_id": *site, "wants_low": *low}
	raw, err := c.call(ctx, "POST", "/api/v1/documents", body, "Idempotency-Key", *key)
	if err != nil {
		return err
	}
	return c.printDoc(raw, false)
}

func (c *cli) docAction(ctx context.Context, action string, args []string) error {
	fs := c.flags("documents " + action)
	var device, reason, birth *string
	var yes *bool
	if action == "reserve" {
		device = fs.String("device", "", "reserve on this device")
	}
	if action == "reissue" {
		birth = fs.String("birth", "", "the date of birth the holder tells you (YYYY-MM-DD): no new codes unless it is the document's")
		yes = fs.Bool("yes", false, "make the new codes without asking for the document number (scripts)")
	}
	if action == "cancel" {
		reason = fs.String("reason", "", "why")
	}
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	if reason != nil {
		if err := checkText("documents cancel: -reason", *reason, 200); err != nil {
			return err
		}
	}
	if birth != nil {
		number, err := c.checkHolder(ctx, pos[0], strings.TrimSpace(*birth))
		if err != nil {
			return err
		}
		if !*yes {
			if err := c.confirmReissue(number); err != nil {
				return err
			}
		}
	}
	var body any
	switch {
	case device != nil && *device != "":
		body = map[string]string{"device_id": *device}
	case reason != nil && *reason != "":
		body = map[string]string{"reason": *reason}
	}
	raw, err := c.call(ctx, "POST", "/api/v1/documents/"+url.PathEscape(pos[0])+"/"+action, body)
	if err != nil {
		return err
	}
	return c.printDoc(raw, false)
}

// checkHolder is the identity check before a re-issue, as the staff
// console asks for it: new codes go to whoever asks for them, so the
// holder's date of birth is compared with the document's first. With
// birth ("" when not given) kluisctl compares it and refuses on a
// mismatch; without it, it prints the console's reminder with the
// document's date (to stderr, in English like every kluisctl message). It
// returns the document's number ("" once purged).
func (c *cli) checkHolder(ctx context.Context, id, birth string) (number string, _ error) {
	if birth != "" {
		if _, err := time.Parse(time.DateOnly, birth); err != nil {
			return "", usageError{"documents reissue: -birth must be a date like 1990-05-31"}
		}
	}
	raw, err := c.call(ctx, "GET", "/api/v1/documents/"+url.PathEscape(id), nil)
	if err != nil {
		return "", err
	}
	var doc struct {
		Number    string     `json:"number"`
		BirthDate *time.Time `json:"holder_birth_date"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return "", fmt.Errorf("bad document from server: %w", err)
	}
	if doc.BirthDate == nil {
		return "", nil // purged: no re-issue anyway, the server says why
	}
	want := doc.BirthDate.UTC().Format(time.DateOnly)
	switch {
	case birth == "":
		fmt.Fprintf(c.stderr, "kluisctl: first check that you are speaking to the holder: ask their date of birth and compare it with the document's (%s). If it does not match, make no new codes (-birth YYYY-MM-DD has kluisctl compare it).\n", want)
	case birth != want:
		return "", fmt.Errorf("documents reissue: the date of birth given (%s) is not the document's: no new codes were made; check that you are speaking to the holder", birth)
	}
	return doc.Number, nil
}

// confirmReissue asks for the document's number before a re-issue, which
// replaces the holder's codes (the old QR code and PIN stop working):
// one line on stdin, compared ignoring spaces around it and case. Nothing
// typed (a script without -yes), an empty line or another number make no
// codes. A purged document (number "") is left to the server to refuse.
func (c *cli) confirmReissue(number string) error {
	if number == "" {
		return nil
	}
	fmt.Fprintf(c.stderr, "kluisctl: new codes replace the holder's current ones: the old QR code and PIN stop working. Type the document number (%s) to confirm: ", number)
	line, err := c.stdin.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("documents reissue: read the confirmation: %w", err)
	}
	if !strings.EqualFold(strings.TrimSpace(line), number) {
		fmt.Fprintln(c.stderr)
		return errors.New("documents reissue: not confirmed: no new codes were made (type the document number when asked; -yes in a script)")
	}
	return nil
}

func (c *cli) deviceShow(ctx context.Context, args []string) error {
	pos, err := parse(c.flags("devices show"), args, 1)
	if err != nil {
		return err
	}
	raw, err := c.call(ctx, "GET", "/api/v1/devices/"+url.PathEscape(pos[0]), nil)
	if err != nil {
		return err
	}
	if c.output == "json" {
		return c.emitJSON(raw)
	}
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	if err := c.keyValues(v, []string{"id", "site_id", "kind", "name", "presence.online", "presence.since", "presence.software", "presence.last_heartbeat_at"}); err != nil {
		return err
	}
	comps, _ := v["compartments"].([]any)
	fmt.Fprintln(c.stdout, "\ncompartments:")
	return c.table(comps, compCols)
}

func (c *cli) devicePassword(ctx context.Context, args []string) error {
	pos, err := parse(c.flags("devices mqtt-password"), args, 1)
	if err != nil {
		return err
	}
	raw, err := c.call(ctx, "POST", "/api/v1/devices/"+url.PathEscape(pos[0])+"/mqtt-password", nil)
	if err != nil {
		return err
	}
	if c.output == "json" {
		return c.emitJSON(raw)
	}
	var v struct {
		Password string `json:"password"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, v.Password)
	return nil
}

func (c *cli) clearLockout(ctx context.Context, args []string) error {
	fs := c.flags("devices clear-lockout")
	reason := fs.String("reason", "", "why (required, audited)")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	if strings.TrimSpace(*reason) == "" {
		return usageError{"devices clear-lockout: -reason is required"}
	}
	if err := checkText("devices clear-lockout: -reason", *reason, 200); err != nil {
		return err
	}
	raw, err := c.call(ctx, "POST", "/api/v1/devices/"+url.PathEscape(pos[0])+"/clear-lockout", map[string]string{"reason": *reason})
	if err != nil {
		return err
	}
	if c.output == "json" {
		return c.emitJSON(raw)
	}
	var v struct {
		WasLocked   bool    `json:"was_locked"`
		LockedUntil *string `json:"locked_until"`
		Device      struct {
			Status string `json:"status"`
			Detail string `json:"detail"`
		} `json:"device"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("bad answer from server: %w", err)
	}
	state := "was not locked"
	if v.WasLocked {
		state = "lifted"
	}
	fmt.Fprintf(c.stdout, "backend: PIN lockout %s\n", state)
	if v.LockedUntil != nil {
		fmt.Fprintf(c.stdout, "backend: the daily cap still locks PIN entry until %s (it cannot be lifted)\n", safetext.Escape(*v.LockedUntil))
	}
	line := "device: " + safetext.Escape(v.Device.Status)
	if v.Device.Detail != "" {
		line += " (" + safetext.Escape(v.Device.Detail) + ")"
	}
	fmt.Fprintln(c.stdout, line)
	return nil
}

// idArg reads the id of a user or token (what) given to cmd: a number of 1
// or more, as `kluisctl users list` or `kluisctl tokens list` shows it.
func idArg(cmd, what, arg string) (int, error) {
	id, err := strconv.Atoi(arg)
	if err != nil || id < 1 {
		return 0, usageError{fmt.Sprintf("%s: %s id %q: want a number (see kluisctl %ss list)", cmd, what, arg, what)}
	}
	return id, nil
}

func compartmentArgs(pos []string) (string, int, error) {
	n, err := strconv.Atoi(pos[1])
	if err != nil || n < 1 {
		return "", 0, usageError{fmt.Sprintf("compartment number %q: want 1 or more (people count from 1)", pos[1])}
	}
	return url.PathEscape(pos[0]), n, nil
}

func (c *cli) compartment(ctx context.Context, args []string) error {
	fs := c.flags("compartment")
	out := fs.String("out-of-service", "", "true takes the compartment out of service, false puts it back")
	reason := fs.String("reason", "", "why")
	pos, err := parse(fs, args, 2)
	if err != nil {
		return err
	}
	dev, n, err := compartmentArgs(pos)
	if err != nil {
		return err
	}
	oos, err := strconv.ParseBool(*out)
	if err != nil {
		return usageError{"compartment: -out-of-service=true or -out-of-service=false is required"}
	}
	if err := checkText("compartment: -reason", *reason, 200); err != nil {
		return err
	}
	raw, err := c.call(ctx, "PATCH", fmt.Sprintf("/api/v1/devices/%s/compartments/%d", dev, n),
		map[string]any{"out_of_service": oos, "reason": *reason})
	if err != nil {
		return err
	}
	return c.emitOne(raw, compCols)
}

func (c *cli) open(ctx context.Context, args []string) error {
	fs := c.flags("open")
	reason := fs.String("reason", "", "why the compartment is opened (required, audited)")
	pos, err := parse(fs, args, 2)
	if err != nil {
		return err
	}
	dev, n, err := compartmentArgs(pos)
	if err != nil {
		return err
	}
	if strings.TrimSpace(*reason) == "" {
		return usageError{"open: -reason is required"}
	}
	if err := checkText("open: -reason", *reason, 200); err != nil {
		return err
	}
	raw, err := c.call(ctx, "POST", fmt.Sprintf("/api/v1/devices/%s/compartments/%d/open", dev, n), map[string]string{"reason": *reason})
	if err != nil {
		return err
	}
	if c.output == "json" {
		return c.emitJSON(raw)
	}
	fmt.Fprintf(c.stdout, "compartment %d of %s opened\n", n, pos[0])
	return nil
}

func (c *cli) auditVerify(ctx context.Context, args []string) error {
	if _, err := parse(c.flags("audit verify"), args, 0); err != nil {
		return err
	}
	raw, err := c.call(ctx, "GET", "/api/v1/audit/verify", nil)
	if err != nil {
		return err
	}
	var rep struct {
		OK       bool   `json:"ok"`
		Records  int    `json:"records"`
		FirstBad *int64 `json:"first_bad"`
		Reason   string `json:"reason"`
		HeadSeq  int64  `json:"head_seq"`
		HeadHash string `json:"head_hash"`
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		return fmt.Errorf("bad report from server: %w", err)
	}
	if c.output == "json" {
		if err := c.emitJSON(raw); err != nil {
			return err
		}
	} else if rep.OK {
		fmt.Fprintf(c.stdout, "audit chain intact: %d records, head %d %s\n", rep.Records, rep.HeadSeq, rep.HeadHash)
	}
	if !rep.OK {
		bad := int64(0)
		if rep.FirstBad != nil {
			bad = *rep.FirstBad
		}
		return fmt.Errorf("audit chain BROKEN at record %d: %s", bad, rep.Reason)
	}
	return nil
}

func (c *cli) userAdd(ctx context.Context, args []string) error {
	fs := c.flags("users add")
	username := fs.String("username", "", "login name")
	role := fs.String("role", "staff", "staff, technician or admin")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	if *username == "" {
		return usageError{"users add: -username is required"}
	}
	pw, err := c.readSecret("KLUIS_NEW_PASSWORD", "new user's password: ")
	if err != nil {
		return err
	}
	raw, err := c.call(ctx, "POST", "/api/v1/users", map[string]string{"username": *username, "password": pw, "role": *role})
	if err != nil {
		return err
	}
	return c.emitOne(raw, userCols)
}

func (c *cli) userUpdate(ctx context.Context, args []string) error {
	fs := c.flags("users update")
	disabled := fs.String("disabled", "", "true disables the user (and revokes its tokens), false enables it")
	kioskPIN := fs.Bool("kiosk-pin", false, "set the staff PIN for kiosk logins (from KLUIS_KIOSK_PIN or stdin; empty clears)")
	badge := fs.String("badge", "", "set the badge id for kiosk logins")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	id, err := idArg("users update", "user", pos[0])
	if err != nil {
		return err
	}
	body := map[string]any{}
	if *disabled != "" {
		b, err := strconv.ParseBool(*disabled)
		if err != nil {
			return usageError{"users update: -disabled=true or -disabled=false"}
		}
		body["disabled"] = b
	}
	if *kioskPIN {
		pin := c.getenv("KLUIS_KIOSK_PIN")
		if pin == "" {
			line, err := c.readLine("staff PIN (8-12 digits): ")
			if err != nil {
				return fmt.Errorf("read PIN: %w", err)
			}
			pin = strings.TrimSpace(line)
		}
		body["kiosk_pin"] = pin
	}
	if *badge != "" {
		body["badge"] = *badge
	}
	if len(body) == 0 {
		return usageError{"users update: give -disabled, -kiosk-pin and/or -badge"}
	}
	raw, err := c.call(ctx, "PATCH", "/api/v1/users/"+strconv.Itoa(id), body)
	if err != nil {
		return err
	}
	return c.emitOne(raw, userCols)
}

func (c *cli) userUnlock(ctx context.Context, args []string) error {
	fs := c.flags("users unlock")
	reason := fs.String("reason", "", "why (audited)")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	id, err := idArg("users unlock", "user", pos[0])
	if err != nil {
		return err
	}
	if err := checkText("users unlock: -reason", *reason, 200); err != nil {
		return err
	}
	raw, err := c.call(ctx, "POST", "/api/v1/users/"+strconv.Itoa(id)+"/clear-login-lockout", map[string]string{"reason": *reason})
	if err != nil {
		return err
	}
	if c.output == "json" {
		return c.emitJSON(raw)
	}
	var v struct {
		Username string `json:"username"`
	}
	_ = json.Unmarshal(raw, &v)
	fmt.Fprintf(c.stdout, "login limits of %s lifted\n", safetext.Escape(v.Username))
	return nil
}

func (c *cli) tokenCreate(ctx context.Context, args []string) error {
	fs := c.flags("tokens create")
	days := fs.Int("days", 0, "lifetime in days (0: the server's default)")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	if err := checkText("tokens create: the name", pos[0], 100); err != nil {
		return err
	}
	if *days < 0 {
		return usageError{"tokens create: -days must be 1 or more (0: the server's default)"}
	}
	// The server checks the password again (step-up): a session taken
	// from someone cannot make a token that outlives it.
	pw, err := c.readSecret("KLUIS_PASSWORD", "current password: ")
	if err != nil {
		return err
	}
	body := map[string]any{"name": pos[0], "current_password": pw}
	if *days > 0 {
		body["expires_in_days"] = *days
	}
	raw, err := c.call(ctx, "POST", "/api/v1/tokens", body)
	if err != nil {
		return err
	}
	if c.output == "json" {
		return c.emitJSON(raw)
	}
	var iss struct {
		Token     string `json:"token"`
		ExpiresAt string `json:"expires_at"`
	}
	_ = json.Unmarshal(raw, &iss)
	fmt.Fprintln(c.stdout, iss.Token)
	fmt.Fprintf(c.stderr, "token expires at %s\n", iss.ExpiresAt)
	return nil
}

// userFlag reads -user (an admin acting on another user's tokens).
func userFlag(name string, v string) (string, error) {
	if v == "" {
		return "", nil
	}
	id, err := strconv.Atoi(v)
	if err != nil || id < 1 {
		return "", usageError{fmt.Sprintf("%s: -user %q: want a user id (see kluisctl users list)", name, v)}
	}
	return "/api/v1/users/" + strconv.Itoa(id), nil
}

func (c *cli) tokenList(ctx context.Context, args []string) error {
	var user string
	rest := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case (a == "-user" || a == "--user") && i+1 < len(args):
			user = args[i+1]
			i++
		case strings.HasPrefix(a, "-user=") || strings.HasPrefix(a, "--user="):
			user = a[strings.Index(a, "=")+1:]
		default:
			rest = append(rest, a)
		}
	}
	base, err := userFlag("tokens list", user)
	if err != nil {
		return err
	}
	if base == "" {
		base = "/api/v1"
	}
	return c.list(ctx, base+"/tokens", rest, []string{"active"}, tokenCols)
}

func (c *cli) tokenRevoke(ctx context.Context, args []string) error {
	fs := c.flags("tokens revoke")
	user := fs.String("user", "", "the user whose token it is (admin); default: yours")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	id, err := idArg("tokens revoke", "token", pos[0])
	if err != nil {
		return err
	}
	base, err := userFlag("tokens revoke", *user)
	if err != nil {
		return err
	}
	if base == "" {
		base = "/api/v1"
	}
	if _, err := c.call(ctx, "DELETE", base+"/tokens/"+strconv.Itoa(id), nil); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "token %d revoked\n", id)
	return nil
}

// deviceLayout sets a device's layout from a file holding kluisd's
// `layout:` section (YAML, with or without the layout: key) or its JSON, or
// resets it to the default grid.
func (c *cli) deviceLayout(ctx context.Context, args []string) error {
	fs := c.flags("devices layout")
	file := fs.String("file", "", "YAML or JSON file with the layout (kluisd's layout: section; - reads stdin)")
	reset := fs.Bool("reset", false, "draw the default grid again")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	if (*file == "") == !*reset {
		return usageError{"devices layout: give -file F or -reset"}
	}
	var layout any
	if *file != "" {
		var b []byte
		if *file == "-" {
			b, err = io.ReadAll(c.stdin)
		} else {
			b, err = os.ReadFile(*file)
		}
		if err != nil {
			return fmt.Errorf("devices layout: %w", err)
		}
		var doc map[string]any
		if err := yaml.Unmarshal(b, &doc); err != nil {
			return usageError{fmt.Sprintf("devices layout: %s is neither YAML nor JSON: %v", *file, err)}
		}
		if l, ok := doc["layout"]; ok && len(doc) == 1 {
			layout = l
		} else {
			layout = doc
		}
	}
	raw, err := c.call(ctx, "PATCH", "/api/v1/devices/"+url.PathEscape(pos[0]), map[string]any{"layout": layout})
	if err != nil {
		return err
	}
	if c.output == "json" {
		return c.emitJSON(raw)
	}
	fmt.Fprintf(c.stdout, "layout of %s set\n", pos[0])
	return nil
}

// deviceService takes a device out of service or puts it back.
func (c *cli) deviceService(ctx context.Context, args []string) error {
	fs := c.flags("devices service")
	out := fs.String("out-of-service", "", "true takes the device out of service (no new reservations), false puts it back")
	reason := fs.String("reason", "", "why (required to take it out; audited)")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	oos, err := strconv.ParseBool(*out)
	if err != nil {
		return usageError{"devices service: -out-of-service=true or -out-of-service=false is required"}
	}
	if oos && strings.TrimSpace(*reason) == "" {
		return usageError{"devices service: -reason is required to take a device out of service"}
	}
	if err := checkText("devices service: -reason", *reason, 200); err != nil {
		return err
	}
	raw, err := c.call(ctx, "PATCH", "/api/v1/devices/"+url.PathEscape(pos[0])+"/service", map[string]any{"out_of_service": oos, "reason": *reason})
	if err != nil {
		return err
	}
	if c.output == "json" {
		return c.emitJSON(raw)
	}
	if oos {
		fmt.Fprintf(c.stdout, "%s is out of service\n", pos[0])
	} else {
		fmt.Fprintf(c.stdout, "%s is in service\n", pos[0])
	}
	return nil
}

// alarmCols are the columns of alarms list; PLACE and ACKNOWLEDGED are
// filled in by alarmRows.
var alarmCols = []column{{"ID", "id"}, {"ALARM", "alarm"}, {"PLACE", "place"}, {"AT", "at"}, {"ACKNOWLEDGED", "ack"}, {"NOTE", "acknowledged.note"}, {"DETAIL", "detail"}}

// alarmRows adds to each alarm of the API its place (b0/c5 for a
// compartment, b1 for a board, nothing for the device) and its
// acknowledgement in words (who, at when; "no").
func alarmRows(items []any) []any {
	for _, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			continue
		}
		m["place"] = nil
		if a, ok := m["addr"].(map[string]any); ok {
			m["place"] = fmt.Sprintf("b%s/c%s", format(a["board"]), format(a["channel"]))
		} else if b, ok := m["board"].(float64); ok {
			m["place"] = "b" + strconv.FormatFloat(b, 'f', -1, 64)
		}
		m["ack"] = "no"
		if k, ok := m["acknowledged"].(map[string]any); ok {
			m["ack"] = fmt.Sprintf("%s at %s", format(k["by"]), format(k["at"]))
		}
	}
	return items
}

// alarmList prints a device's open alarms (GET .../alarms).
func (c *cli) alarmList(ctx context.Context, args []string) error {
	pos, err := parse(c.flags("alarms list"), args, 1)
	if err != nil {
		return err
	}
	raw, err := c.call(ctx, "GET", "/api/v1/devices/"+url.PathEscape(pos[0])+"/alarms", nil)
	if err != nil {
		return err
	}
	if c.output == "json" {
		return c.emitJSON(raw)
	}
	var v struct {
		Alarms []any `json:"alarms"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("bad answer from server: %w", err)
	}
	if len(v.Alarms) == 0 {
		fmt.Fprintf(c.stdout, "%s has no open alarm\n", safetext.Escape(pos[0]))
		return nil
	}
	return c.table(alarmRows(v.Alarms), alarmCols)
}

// alarmAck acknowledges an open alarm (POST .../alarms/{alarm}/ack).
func (c *cli) alarmAck(ctx context.Context, args []string) error {
	fs := c.flags("alarms ack")
	note := fs.String("note", "", "optional: one line of at most 200 characters (audited)")
	pos, err := parse(fs, args, 2)
	if err != nil {
		return err
	}
	*note = strings.TrimSpace(*note)
	if err := checkText("alarms ack: -note", *note, 200); err != nil {
		return err
	}
	var body any
	if *note != "" {
		body = map[string]string{"note": *note}
	}
	raw, err := c.call(ctx, "POST", "/api/v1/devices/"+url.PathEscape(pos[0])+"/alarms/"+url.PathEscape(pos[1])+"/ack", body)
	if err != nil {
		return err
	}
	if c.output == "json" {
		return c.emitJSON(raw)
	}
	var v struct {
		Alarm struct {
			Kind string `json:"alarm"`
			Ack  *struct {
				By   string `json:"by"`
				At   string `json:"at"`
				Note string `json:"note"`
			} `json:"acknowledged"`
		} `json:"alarm"`
		Recorded bool `json:"recorded"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("bad answer from server: %w", err)
	}
	if v.Alarm.Ack == nil {
		return errors.New("bad answer from server: no acknowledgement")
	}
	what := fmt.Sprintf("alarm %s (%s) of %s", safetext.Escape(pos[1]), safetext.Escape(v.Alarm.Kind), safetext.Escape(pos[0]))
	if v.Recorded {
		fmt.Fprintf(c.stdout, "%s acknowledged\n", what)
		return nil
	}
	fmt.Fprintf(c.stdout, "%s was acknowledged before, by %s at %s; nothing recorded", what, safetext.Escape(v.Alarm.Ack.By), safetext.Escape(v.Alarm.Ack.At))
	if *note != "" {
		fmt.Fprint(c.stdout, " (your note was not kept)")
	}
	fmt.Fprintln(c.stdout)
	return nil
}
