package notify

import (
	"fmt"
	"net/url"
	"strings"
)

// ParseMailURL makes a MailSender from a URL, for configuration files and
// flags:
//
//	smtp://[user[:password]@]host:port        STARTTLS required
//	smtp://host:25?plain=1                     a trusted relay without TLS
//	drop:/var/lib/kluis/outbox                 .eml files into a directory
//
// The password never appears in the returned error.
func ParseMailURL(s string) (MailSender, error) {
	if dir, ok := strings.CutPrefix(s, "drop:"); ok {
		dir = strings.TrimPrefix(dir, "//")
		if dir == "" {
			return nil, fmt.Errorf("notify: mail URL drop: needs a directory: %w", ErrInvalid)
		}
		return &Drop{Dir: dir}, nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "smtp" || u.Host == "" || u.Port() == "" {
		return nil, fmt.Errorf("notify: mail URL: want smtp://host:port or drop:<dir>: %w", ErrInvalid)
	}
	m := &SMTP{Addr: u.Host, AllowPlain: u.Query().Get("plain") == "1"}
	if u.User != nil {
		m.Username = u.User.Username()
		m.Password, _ = u.User.Password()
	}
	return m, nil
}
