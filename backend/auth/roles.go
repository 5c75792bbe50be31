package auth

import "fmt"

// Role is what a user may do.
type Role string

// The roles.
const (
	// RoleStaff is counter staff: registers, loads and takes back documents.
	RoleStaff Role = "staff"
	// RoleTechnician keeps devices healthy and may open compartments remotely.
	RoleTechnician Role = "technician"
	// RoleAdmin may do everything, manages users and verifies the audit chain.
	RoleAdmin Role = "admin"
)

// Roles lists every role, for table tests and help texts.
func Roles() []Role { return []Role{RoleStaff, RoleTechnician, RoleAdmin} }

// ParseRole checks s names a role.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleStaff, RoleTechnician, RoleAdmin:
		return r, nil
	}
	return "", fmt.Errorf("%w: %q (want staff, technician or admin)", ErrInvalidRole, s)
}
