package service_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"kluis/backend/lifecycle"
	"kluis/backend/service"
	"kluis/backend/store"
)

// presence writes a device's presence row as the device link does.
func (e *env) presence(id, state string) {
	e.t.Helper()
	_, err := e.st.Pool().Exec(e.ctx, `INSERT INTO device_presence (device_id, state, changed_at) VALUES ($1, $2, $3)
		ON CONFLICT (device_id) DO UPDATE SET state = $2, changed_at = $3`, id, state, e.clock.Now())
	require.NoError(e.t, err)
}

// The automatic choice never sends a holder to a machine that cannot
// open: a device that never connected ("a-never", first by id) and one
// offline now are skipped for the online one; with none online the
// reservation is refused with ErrNoOnlineDevice; naming a device still
// reserves there, online or not.
func TestAutoPickOnlyOnlineDevices(t *testing.T) {
	e := newEnv(t, func(o *service.Options) { o.PickOnlineOnly = true })
	e.device("a-never", uniform(2, store.SizeS, 150)...)
	e.device("b-offline", uniform(2, store.SizeS, 150)...)
	e.device("c-online", uniform(1, store.SizeS, 150)...)
	e.presence("b-offline", "offline")
	e.presence("c-online", "online")

	d1, err := e.svc.Reserve(e.ctx, "user:counter1", e.register(store.EID, false).ID, service.ReserveOptions{})
	require.NoError(t, err)
	require.Equal(t, "c-online", d1.DeviceID, "online device chosen over never-seen and offline ones")

	// c-online is full now: refuse rather than pick a broken device.
	doc := e.register(store.EID, false)
	_, err = e.svc.Reserve(e.ctx, "user:counter1", doc.ID, service.ReserveOptions{})
	require.ErrorIs(t, err, service.ErrNoOnlineDevice)
	require.ErrorIs(t, err, service.ErrNoCompartment)
	require.ErrorIs(t, err, service.ErrConflict)
	got, err := e.svc.GetDocument(e.ctx, doc.ID)
	require.NoError(t, err)
	require.Equal(t, lifecycle.Registered, got.State)
	require.Empty(t, got.DeviceID)

	// The offline device comes back: it is chosen, deterministically.
	e.presence("b-offline", "online")
	d2, err := e.svc.Reserve(e.ctx, "user:counter1", doc.ID, service.ReserveOptions{})
	require.NoError(t, err)
	require.Equal(t, "b-offline", d2.DeviceID)
	require.Equal(t, 1, e.compartment(d2.CompartmentID).Number)

	// Staff naming a device get it, even one that never connected.
	d3, err := e.svc.Reserve(e.ctx, "user:counter1", e.register(store.EID, false).ID, service.ReserveOptions{DeviceID: "a-never"})
	require.NoError(t, err)
	require.Equal(t, "a-never", d3.DeviceID)

	// Out of service is never chosen, even online.
	e.presence("a-never", "online")
	_, err = e.svc.SetDeviceOutOfService(e.ctx, "user:admin", "a-never", true, "repair")
	require.NoError(t, err)
	d4, err := e.svc.Reserve(e.ctx, "user:counter1", e.register(store.EID, false).ID, service.ReserveOptions{})
	require.NoError(t, err)
	require.Equal(t, "b-offline", d4.DeviceID)
}
