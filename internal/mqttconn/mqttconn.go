// Package mqttconn opens paho's network connection to a broker read through
// a buffer (paho.mqtt.golang reads a packet's fixed header byte by byte:
// unbuffered, one read system call a byte). Give it to paho with
// SetCustomOpenConnectionFn(mqttconn.Open). kluisd's link, the Tasmota
// driver and kluis-bench's simulated kiosks use it.
package mqttconn

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// bufSize is the read buffer of a connection: a few packets of a device's
// traffic.
const bufSize = 4096

// Open opens the connection to uri as paho would with o (its Dialer,
// TLSConfig, ConnectTimeout, HTTPHeaders and WebsocketOptions): tcp and mqtt
// URLs over TCP, ssl, tls, mqtts, mqtt+ssl and tcps over TLS (handshake
// done, then buffered), ws and wss through paho's websocket (its reader is
// buffered already). Unlike paho it reads no proxy from the environment
// (all_proxy) and opens no unix sockets.
func Open(uri *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
	d := o.Dialer
	if d == nil {
		d = &net.Dialer{Timeout: o.ConnectTimeout}
	}
	switch uri.Scheme {
	case "tcp", "mqtt":
		c, err := d.Dial("tcp", uri.Host)
		if err != nil {
			return nil, fmt.Errorf("mqttconn: %w", err)
		}
		return buffered(c), nil
	case "ssl", "tls", "mqtts", "mqtt+ssl", "tcps":
		c, err := tls.DialWithDialer(d, "tcp", uri.Host, o.TLSConfig)
		if err != nil {
			return nil, fmt.Errorf("mqttconn: %w", err)
		}
		return buffered(c), nil
	case "ws", "wss":
		ws := *uri
		ws.User = nil
		var tlsc *tls.Config
		if uri.Scheme == "wss" {
			tlsc = o.TLSConfig
		}
		c, err := mqtt.NewWebsocket(ws.String(), tlsc, o.ConnectTimeout, o.HTTPHeaders, o.WebsocketOptions)
		if err != nil {
			return nil, fmt.Errorf("mqttconn: %w", err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("mqttconn: unknown scheme %q", uri.Scheme)
}

func buffered(c net.Conn) net.Conn { return &bufConn{Conn: c, r: bufio.NewReaderSize(c, bufSize)} }

// bufConn reads a connection through a buffer; writes go straight through.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// NetConn returns the connection read through the buffer.
func (c *bufConn) NetConn() net.Conn { return c.Conn }

// TCPConn returns the TCP connection under c (a connection of Open, a TLS
// connection, or a *net.TCPConn itself); false for a websocket.
func TCPConn(c net.Conn) (*net.TCPConn, bool) {
	for range 4 {
		switch v := c.(type) {
		case *net.TCPConn:
			return v, true
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil, false
		}
	}
	return nil, false
}
