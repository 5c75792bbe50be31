package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// SMSSender sends a text message.
type SMSSender interface {
	SendSMS(ctx context.Context, to, text string) error
}

// SMSGateway posts {"to": ..., "text": ...} as JSON to URL with a bearer
// token. Neither the text nor the token appear in its errors.
type SMSGateway struct {
	// URL of the gateway's send endpoint.
	URL string
	// Token is sent as "Authorization: Bearer <Token>".
	Token string
	// Client; default one with a 15 s timeout.
	Client *http.Client
}

// SendSMS posts one message; any status other than 2xx is an error.
func (g *SMSGateway) SendSMS(ctx context.Context, to, text string) error {
	if to == "" || text == "" {
		return fmt.Errorf("notify: sms: recipient and text are required: %w", ErrInvalid)
	}
	body, err := json.Marshal(map[string]string{"to": to, "text": text})
	if err != nil {
		return fmt.Errorf("notify: sms: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("notify: sms: gateway URL: %w", ErrInvalid)
	}
	req.Header.Set("Content-Type", "application/json")
	if g.Token != "" {
		req.Header.Set("Authorization", "Bearer "+g.Token)
	}
	c := g.Client
	if c == nil {
		c = &http.Client{Timeout: 15 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("notify: sms: gateway unreachable: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("notify: sms: gateway answered %d", resp.StatusCode)
	}
	return nil
}
