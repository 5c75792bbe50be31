package api

import "kluis/backend/auth"

var (
	anyRole   = []auth.Role{auth.RoleStaff, auth.RoleTechnician, auth.RoleAdmin}
	adminOnly = []auth.Role{auth.RoleAdmin}
	staffRole = []auth.Role{auth.RoleStaff, auth.RoleAdmin}
	techRole  = []auth.Role{auth.RoleTechnician, auth.RoleAdmin}
)

// routeTable is the single list of routes: the mux, authorisation, metrics
// labels and the OpenAPI test all read it. Public routes have nil roles.
func (s *Server) routeTable() []route {
	return []route{
		{method: "GET", path: "/healthz", h: s.handleHealthz},
		{method: "GET", path: "/readyz", h: s.handleReadyz},
		{method: "GET", path: "/metrics", h: s.metricsHandler()},
		{method: "GET", path: "/api/v1/openapi.yaml", h: s.handleOpenAPI},

		{method: "POST", path: "/api/v1/sessions", h: s.handleLogin},
		{method: "DELETE", path: "/api/v1/sessions/current", roles: anyRole, h: s.handleLogout},
		{method: "GET", path: "/api/v1/me", roles: anyRole, h: s.handleMe},
		{method: "POST", path: "/api/v1/me/kiosk-pin", roles: anyRole, h: s.handleSetOwnKioskPIN},
		{method: "POST", path: "/api/v1/me/password", roles: anyRole, h: s.handleChangeOwnPassword},

		{method: "GET", path: "/api/v1/users", roles: adminOnly, h: s.handleListUsers},
		{method: "POST", path: "/api/v1/users", roles: adminOnly, idempotent: true, h: s.handleCreateUser},
		{method: "GET", path: "/api/v1/users/{id}", roles: adminOnly, h: s.handleGetUser},
		{method: "PATCH", path: "/api/v1/users/{id}", roles: adminOnly, h: s.handleUpdateUser},
		{method: "POST", path: "/api/v1/users/{id}/clear-login-lockout", roles: adminOnly, h: s.handleClearLoginLockout},
		{method: "GET", path: "/api/v1/users/{id}/tokens", roles: adminOnly, h: s.handleListUserTokens},
		{method: "DELETE", path: "/api/v1/users/{id}/tokens/{token}", roles: adminOnly, h: s.handleRevokeUserToken},

		// Tokens are not idempotent: a replay would have to store the clear token.
		{method: "GET", path: "/api/v1/tokens", roles: anyRole, h: s.handleListTokens},
		{method: "POST", path: "/api/v1/tokens", roles: anyRole, h: s.handleCreateToken},
		{method: "DELETE", path: "/api/v1/tokens/{id}", roles: anyRole, h: s.handleRevokeToken},

		{method: "GET", path: "/api/v1/sites", roles: anyRole, h: s.handleListSites},
		{method: "POST", path: "/api/v1/sites", roles: adminOnly, idempotent: true, h: s.handleCreateSite},
		{method: "GET", path: "/api/v1/sites/{id}", roles: anyRole, h: s.handleGetSite},

		{method: "GET", path: "/api/v1/devices", roles: anyRole, h: s.handleListDevices},
		{method: "POST", path: "/api/v1/devices", roles: adminOnly, idempotent: true, h: s.handleCreateDevice},
		{method: "GET", path: "/api/v1/devices/{id}", roles: anyRole, h: s.handleGetDevice},
		{method: "PATCH", path: "/api/v1/devices/{id}", roles: adminOnly, h: s.handleUpdateDevice},
		{method: "PATCH", path: "/api/v1/devices/{id}/service", roles: techRole, h: s.handleDeviceService},
		// Not idempotent: a replay would have to store the password.
		{method: "POST", path: "/api/v1/devices/{id}/mqtt-password", roles: adminOnly, h: s.handleDevicePassword},
		{method: "PATCH", path: "/api/v1/devices/{id}/compartments/{number}", roles: techRole, h: s.handleUpdateCompartment},
		{method: "POST", path: "/api/v1/devices/{id}/compartments/{number}/open", roles: techRole, h: s.handleOpen},
		{method: "POST", path: "/api/v1/devices/{id}/clear-lockout", roles: anyRole, h: s.handleClearLockout},
		{method: "GET", path: "/api/v1/devices/{id}/alarms", roles: anyRole, h: s.handleListAlarms},
		// Idempotent by nature: a second acknowledgement records nothing.
		{method: "POST", path: "/api/v1/devices/{id}/alarms/{alarm}/ack", roles: techRole, h: s.handleAckAlarm},

		{method: "GET", path: "/api/v1/documents", roles: staffRole, h: s.handleListDocuments},
		{method: "POST", path: "/api/v1/documents", roles: staffRole, idempotent: true, h: s.handleRegisterDocument},
		{method: "GET", path: "/api/v1/documents/{id}", roles: staffRole, h: s.handleGetDocument},
		{method: "GET", path: "/api/v1/documents/{id}/slip", roles: staffRole, h: s.handleSlip},
		{method: "POST", path: "/api/v1/documents/{id}/reserve", roles: staffRole, h: s.documentAction("reserve")},
		{method: "POST", path: "/api/v1/documents/{id}/load", roles: staffRole, h: s.documentAction("load")},
		{method: "POST", path: "/api/v1/documents/{id}/cancel", roles: staffRole, h: s.documentAction("cancel")},
		{method: "POST", path: "/api/v1/documents/{id}/renotify", roles: staffRole, h: s.documentAction("renotify")},
		{method: "POST", path: "/api/v1/documents/{id}/reissue", roles: staffRole, h: s.documentAction("reissue")},
		{method: "POST", path: "/api/v1/documents/{id}/retrieve", roles: staffRole, h: s.documentAction("retrieve")},
		{method: "POST", path: "/api/v1/documents/{id}/unreserve", roles: staffRole, h: s.documentAction("unreserve")},
		{method: "POST", path: "/api/v1/documents/{id}/collect", roles: staffRole, h: s.documentAction("collect")},

		{method: "GET", path: "/t/{trackingID}", page: true, h: s.handleTrack},

		{method: "GET", path: "/api/v1/audit", roles: adminOnly, h: s.handleListAudit},
		{method: "GET", path: "/api/v1/audit/verify", roles: adminOnly, h: s.handleVerifyAudit},
	}
}
