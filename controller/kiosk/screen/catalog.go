package screen

import (
	"fmt"
	"sort"
	"strings"

	"kluis/controller/engine"
	"kluis/controller/wire"
)

// Catalog is every text the kiosk screen shows, in nl, fr, en and de: the
// screen's own texts (below) and the engine's state messages, under
// "state.<state>" (taken from controller/engine, not copied). Placeholders:
// {n} a compartment or board number, {m} minutes, {s} the staff member's
// name.
type Catalog struct {
	texts map[string][]string // key -> one text per language, in Langs order
}

// Langs are the screen's languages, in the order of the language switch.
func Langs() []string { return engine.Langs() }

// ErrMissing is wrapped when a key has no text in a language.
var ErrMissing = fmt.Errorf("screen: no text")

// NewCatalog builds the catalogue. It fails when a text is missing in a
// language or a key is both the screen's and the engine's.
func NewCatalog() (*Catalog, error) {
	c := &Catalog{texts: map[string][]string{}}
	langs := Langs()
	for k, v := range uiTexts {
		if len(v) != len(langs) {
			return nil, fmt.Errorf("%w: %q has %d languages, want %d", ErrMissing, k, len(v), len(langs))
		}
		c.texts[k] = v[:]
	}
	for _, st := range engine.States() {
		k := "state." + st
		if _, dup := c.texts[k]; dup {
			return nil, fmt.Errorf("screen: %q is the engine's", k)
		}
		v := make([]string, len(langs))
		for i, l := range langs {
			t, ok := engine.MessageText(st, l)
			if !ok {
				return nil, fmt.Errorf("%w: engine message %s in %s", ErrMissing, st, l)
			}
			v[i] = t
		}
		c.texts[k] = v
	}
	return c, nil
}

// Text returns the text of key in lang, or an error: there is no fallback
// to another language or key.
func (c *Catalog) Text(key, lang string) (string, error) {
	v, ok := c.texts[key]
	if !ok {
		return "", fmt.Errorf("%w: unknown key %q", ErrMissing, key)
	}
	for i, l := range Langs() {
		if l == lang {
			if v[i] == "" {
				return "", fmt.Errorf("%w: %q in %s", ErrMissing, key, lang)
			}
			return v[i], nil
		}
	}
	return "", fmt.Errorf("%w: unknown language %q", ErrMissing, lang)
}

// Keys returns every key, sorted.
func (c *Catalog) Keys() []string {
	ks := make([]string, 0, len(c.texts))
	for k := range c.texts {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// fill replaces the placeholders of t.
func fill(t string, n, m int, s string) string {
	return strings.NewReplacer("{n}", fmt.Sprint(n), "{m}", fmt.Sprint(m), "{s}", s).Replace(t)
}

// alarmKey is the catalogue key of an alarm kind.
func alarmKey(a wire.AlarmKind) string { return "alarm." + string(a) }

// uiTexts are the screen's own texts: nl, fr, en, de. Plain words, short
// sentences (B1), saying what to do next.
var uiTexts = map[string][4]string{
	// Every screen.
	"page.title": {"Document afhalen", "Retirer un document", "Collect a document", "Dokument abholen"},
	"lang.nav":   {"Taal", "Langue", "Language", "Sprache"},
	"lang.nl":    {"Nederlands", "Nederlands", "Nederlands", "Nederlands"},
	"lang.fr":    {"Français", "Français", "Français", "Français"},
	"lang.en":    {"English", "English", "English", "English"},
	"lang.de":    {"Deutsch", "Deutsch", "Deutsch", "Deutsch"},
	// Each language by its code, where the names at the large size do
	// not fit (the 800x480 panel's header).
	"lang.short.nl": {"NL", "NL", "NL", "NL"},
	"lang.short.fr": {"FR", "FR", "FR", "FR"},
	"lang.short.en": {"EN", "EN", "EN", "EN"},
	"lang.short.de": {"DE", "DE", "DE", "DE"},
	"help":          {"Hulp? Bel\u00a01777.", "Aide\u00a0? Appelez le\u00a01777.", "Help? Call\u00a01777.", "Hilfe? Rufen Sie\u00a01777\u00a0an."},
	"restart":       {"Opnieuw beginnen", "Recommencer", "Start again", "Neu beginnen"},
	"again":         {"Opnieuw proberen", "Réessayer", "Try again", "Erneut versuchen"},
	"large":         {"Grote letters", "Grands caractères", "Large text", "Große Schrift"},
	"staff.entry":   {"Personeel", "Personnel", "Staff", "Personal"},
	// The machine's name (kiosk.display_name), as the citizen's e-mail
	// and letter name it: on every screen, so that someone sent to
	// "Stadhuis Kortrijk, automaat 2" can tell they are at the right one.
	"place": {"Dit toestel: {name}", "Cet appareil\u00a0: {name}", "This machine: {name}", "Dieses Gerät: {name}"},
	"err.input": {"Dat lukte niet. Probeer het opnieuw.", "Cela n'a pas marché. Réessayez.",
		"That did not work. Please try again.", "Das hat nicht geklappt. Bitte versuchen Sie es noch einmal."},
	"conn.msg": {"Het toestel start opnieuw. Wacht even.", "L'appareil redémarre. Patientez un instant.",
		"The machine is restarting. Please wait a moment.", "Das Gerät startet neu. Bitte warten Sie einen Moment."},

	// The start screen.
	"start.title": {"Haal hier uw document af", "Retirez ici votre document", "Collect your document here", "Holen Sie hier Ihr Dokument ab"},
	"start.scan": {"Houd de QR\u2011code uit uw e\u2011mail of brief onder de scanner.", "Tenez le code QR de votre e\u2011mail ou de votre lettre sous le scanner.",
		"Hold the QR code from your e\u2011mail or letter under the scanner.", "Halten Sie den QR\u2011Code aus Ihrer E\u2011Mail oder Ihrem Brief unter den Scanner."},
	"start.pin": {"Pincode intikken", "Taper le code PIN", "Type your PIN", "PIN eingeben"},

	// The keypads.
	"keypad.label": {"Cijfertoetsen", "Clavier numérique", "Number keys", "Zifferntasten"},
	"key.delete":   {"Wissen", "Effacer", "Delete", "Löschen"},
	"key.ok":       {"Bevestigen", "Valider", "Confirm", "Bestätigen"},
	"key.dash":     {"Streepje", "Tiret", "Dash", "Bindestrich"},

	// PIN.
	"pin.title": {"Uw pincode", "Votre code PIN", "Your PIN", "Ihre PIN"},
	"pin.hint": {"Uw pincode staat in de e-mail of brief die u kreeg.", "Votre code PIN se trouve dans votre e-mail ou votre lettre.",
		"Your PIN is in the e-mail or letter you received.", "Ihre PIN steht in der E-Mail oder dem Brief, den Sie bekommen haben."},
	// The toggle beside a typed PIN (masked as dots by default): pressed,
	// the digits show.
	"pin.show": {"Cijfers tonen", "Voir les chiffres", "Show digits", "Ziffern zeigen"},
	// What a screen reader says of a typed PIN, instead of its dots
	// (Typed): how many digits, and the digits themselves only while they
	// are shown.
	"pin.said.none":   {"Nog geen cijfers ingetypt", "Aucun chiffre saisi", "No digits entered", "Noch keine Ziffern eingegeben"},
	"pin.said.one":    {"1\u00a0cijfer ingetypt", "1\u00a0chiffre saisi", "1\u00a0digit entered", "1\u00a0Ziffer eingegeben"},
	"pin.said.many":   {"{n}\u00a0cijfers ingetypt", "{n}\u00a0chiffres saisis", "{n}\u00a0digits entered", "{n}\u00a0Ziffern eingegeben"},
	"pin.said.digits": {"Cijfers: {d}", "Chiffres\u00a0: {d}", "Digits: {d}", "Ziffern: {d}"},
	"pin.short": {"Een pincode heeft minstens 4\u00a0cijfers.", "Un code PIN a au moins 4\u00a0chiffres.",
		"A PIN has at least 4\u00a0digits.", "Eine PIN hat mindestens 4\u00a0Ziffern."},

	// Date of birth.
	"birth.title": {"Uw geboortedatum", "Votre date de naissance", "Your date of birth", "Ihr Geburtsdatum"},
	"birth.day":   {"Dag", "Jour", "Day", "Tag"},
	"birth.month": {"Maand", "Mois", "Month", "Monat"},
	"birth.year":  {"Jaar", "Année", "Year", "Jahr"},
	"birth.example": {"Bijvoorbeeld: dag\u00a003, maand\u00a002, jaar\u00a01990.", "Par exemple\u00a0: jour\u00a003, mois\u00a002, année\u00a01990.",
		"For example: day\u00a003, month\u00a002, year\u00a01990.", "Zum Beispiel: Tag\u00a003, Monat\u00a002, Jahr\u00a01990."},
	"birth.invalid": {"Deze datum klopt niet. Kijk dag, maand en jaar na.", "Cette date n'est pas correcte. Vérifiez le jour, le mois et l'année.",
		"This date is not correct. Check the day, month and year.", "Dieses Datum stimmt nicht. Prüfen Sie Tag, Monat und Jahr."},

	// Titles of the citizen's screens (the message below is the engine's).
	"title.wait":              {"Even geduld", "Un instant", "Please wait", "Bitte warten"},
	"title.problem":           {"Er is een probleem", "Il y a un problème", "There is a problem", "Es gibt ein Problem"},
	"title.open":              {"Neem uw document", "Prenez votre document", "Take your document", "Nehmen Sie Ihr Dokument"},
	"title.done":              {"Klaar", "Terminé", "All done", "Fertig"},
	"title.not_collected":     {"Uw document ligt er nog", "Votre document est encore là", "Your document is still there", "Ihr Dokument ist noch da"},
	"title.wrong_code":        {"Code niet aanvaard", "Code refusé", "Code not accepted", "Code nicht angenommen"},
	"title.expired":           {"Code vervallen", "Code expiré", "Code expired", "Code abgelaufen"},
	"title.already_collected": {"Al afgehaald", "Déjà retiré", "Already collected", "Bereits abgeholt"},
	"title.locked_out":        {"Even geblokkeerd", "Bloqué pour un moment", "Blocked for a while", "Vorübergehend gesperrt"},
	"title.out_of_order":      {"Buiten gebruik", "Hors service", "Out of order", "Außer Betrieb"},
	"title.left_open":         {"De deur staat nog open", "La porte est encore ouverte", "The door is still open", "Die Tür ist noch offen"},
	"left_open.msg": {"Sluit de deur van vak\u00a0{n}, alstublieft.", "Fermez la porte du casier\u00a0{n}, s'il vous plaît.",
		"Please close the door of compartment\u00a0{n}.", "Bitte schließen Sie die Tür von Fach\u00a0{n}."},
	"left_open.hatch": {"Sluit het luik, alstublieft.", "Fermez la trappe, s'il vous plaît.",
		"Please close the hatch.", "Bitte schließen Sie die Klappe."},
	"next.not_collected": {"Wilt u het toch meenemen? Scan of tik uw code opnieuw.", "Vous le voulez quand même\u00a0? Scannez ou tapez à nouveau votre code.",
		"Do you want it after all? Scan or type your code again.", "Möchten Sie es doch mitnehmen? Scannen oder tippen Sie Ihren Code noch einmal."},
	// A refused code may be one for another machine (the backend says
	// "wrong code" for both, not to leak): the e-mail and letter name the
	// machine; a citizen at the wrong one would try again until locked out.
	"next.wrong_code": {"Kijk in uw e-mail of brief: ligt uw document in dit toestel?", "Vérifiez dans votre e-mail ou votre lettre\u00a0: votre document est-il dans cet appareil\u00a0?",
		"Check your e-mail or letter: is your document in this machine?", "Sehen Sie in Ihrer E-Mail oder Ihrem Brief nach: Liegt Ihr Dokument in diesem Gerät?"},
	"next.expired": {"Bel\u00a01777. Wij helpen u verder.", "Appelez le\u00a01777. Nous vous aiderons.",
		"Call\u00a01777. We will help you.", "Rufen Sie\u00a01777\u00a0an. Wir helfen Ihnen weiter."},
	"next.already_collected": {"Klopt dit niet? Bel\u00a01777.", "Ce n'est pas correct\u00a0? Appelez le\u00a01777.",
		"Is this not right? Call\u00a01777.", "Stimmt das nicht? Rufen Sie\u00a01777\u00a0an."},
	// A citizen sent to the counter at night finds it closed: say whom to
	// call (the city's desk) on every screen that sends them there.
	"next.closed": {"Is het loket gesloten? Bel\u00a01777.", "Le guichet est fermé\u00a0? Appelez le\u00a01777.",
		"Is the counter closed? Call\u00a01777.", "Ist der Schalter geschlossen? Rufen Sie\u00a01777\u00a0an."},
	// After the second-to-last wrong PIN (the device's count, never the
	// code's): how long one more locks PIN entry; {m} minutes, or hours
	// for a lock of two hours or more (the daily cap).
	"pin.last_try.one": {"Let op: na nog één foute pincode is het toetsenbord 1\u00a0minuut geblokkeerd.", "Attention\u00a0: encore un code PIN erroné et le clavier sera bloqué pendant 1\u00a0minute.",
		"Careful: one more wrong PIN locks the keypad for 1\u00a0minute.", "Achtung: Nach noch einer falschen PIN ist die Tastatur 1\u00a0Minute gesperrt."},
	"pin.last_try.many": {"Let op: na nog één foute pincode is het toetsenbord {m}\u00a0minuten geblokkeerd.", "Attention\u00a0: encore un code PIN erroné et le clavier sera bloqué pendant {m}\u00a0minutes.",
		"Careful: one more wrong PIN locks the keypad for {m}\u00a0minutes.", "Achtung: Nach noch einer falschen PIN ist die Tastatur {m}\u00a0Minuten gesperrt."},
	"pin.last_try.hours": {"Let op: na nog één foute pincode is het toetsenbord {m}\u00a0uur geblokkeerd.", "Attention\u00a0: encore un code PIN erroné et le clavier sera bloqué pendant {m}\u00a0heures.",
		"Careful: one more wrong PIN locks the keypad for {m}\u00a0hours.", "Achtung: Nach noch einer falschen PIN ist die Tastatur {m}\u00a0Stunden gesperrt."},
	// Before the idle return (timeouts.session without a touch): {n}
	// seconds left; the button (or any touch) keeps the screen where the
	// script decides (a keypad, the start in another language).
	"idle.warn": {"Bent u er nog? Over {n}\u00a0seconden gaat het scherm terug naar het begin.", "Êtes-vous encore là\u00a0? Dans {n}\u00a0secondes, l'écran revient au début.",
		"Are you still there? In {n}\u00a0seconds the screen goes back to the start.", "Sind Sie noch da? In {n}\u00a0Sekunden geht der Bildschirm zurück zum Anfang."},
	// The same with one second left.
	"idle.warn.one": {"Bent u er nog? Over 1\u00a0seconde gaat het scherm terug naar het begin.", "Êtes-vous encore là\u00a0? Dans 1\u00a0seconde, l'écran revient au début.",
		"Are you still there? In 1\u00a0second the screen goes back to the start.", "Sind Sie noch da? In 1\u00a0Sekunde geht der Bildschirm zurück zum Anfang."},
	"idle.stay": {"Ik ben er nog", "Je suis encore là", "I am still here", "Ich bin noch da"},
	// The counter's opening hours (kiosk.counter_hours), on the screens
	// that send a citizen to the counter: a line per run of days with the
	// same hours, on the 24 h clock. {a} and {b} are days, times or parts.
	"hours.title":  {"Openingsuren van het loket:", "Heures d'ouverture du guichet\u00a0:", "Opening hours of the counter:", "Öffnungszeiten des Schalters:"},
	"hours.line":   {"{a}: {b}", "{a}\u00a0: {b}", "{a}: {b}", "{a}: {b}"},
	"hours.days":   {"{a} tot en met {b}", "du {a} au {b}", "{a} to {b}", "{a} bis {b}"},
	"hours.and":    {"{a} en {b}", "{a} et {b}", "{a} and {b}", "{a} und {b}"},
	"hours.span":   {"{a} tot {b}", "de {a} à {b}", "{a} to {b}", "{a} bis {b}"},
	"hours.closed": {"gesloten", "fermé", "closed", "geschlossen"},
	// The counter's closed dates (kiosk.counter_closed) before its next
	// opening, above its hours: {a} the dates (nl "25-12", fr and en
	// "25/12", de "25.12.", joined as hours.and joins); then when it opens
	// again, {a} the day and date, {b} the time.
	"closed.on.one":  {"Het loket is gesloten op {a}.", "Le guichet est fermé le {a}.", "The counter is closed on {a}.", "Der Schalter ist am {a} geschlossen."},
	"closed.on.many": {"Het loket is gesloten op {a}.", "Le guichet est fermé les {a}.", "The counter is closed on {a}.", "Der Schalter ist am {a} geschlossen."},
	"closed.next":    {"Het is weer open op {a} vanaf {b}.", "Il rouvre le {a} à {b}.", "It opens again on {a} at {b}.", "Er öffnet wieder am {a} um {b}."},
	"day.mon":        {"maandag", "lundi", "Monday", "Montag"},
	"day.tue":        {"dinsdag", "mardi", "Tuesday", "Dienstag"},
	"day.wed":        {"woensdag", "mercredi", "Wednesday", "Mittwoch"},
	"day.thu":        {"donderdag", "jeudi", "Thursday", "Donnerstag"},
	"day.fri":        {"vrijdag", "vendredi", "Friday", "Freitag"},
	"day.sat":        {"zaterdag", "samedi", "Saturday", "Samstag"},
	"day.sun":        {"zondag", "dimanche", "Sunday", "Sonntag"},
	"retry.one": {"U kunt het over 1\u00a0minuut opnieuw proberen.", "Vous pourrez réessayer dans 1\u00a0minute.",
		"You can try again in 1\u00a0minute.", "Versuchen Sie es in 1\u00a0Minute erneut."},
	"retry.many": {"U kunt het over {m}\u00a0minuten opnieuw proberen.", "Vous pourrez réessayer dans {m}\u00a0minutes.",
		"You can try again in {m}\u00a0minutes.", "Versuchen Sie es in {m}\u00a0Minuten erneut."},

	// The drawing of the device.
	"drawing.n": {"Vak\u00a0{n}", "Casier\u00a0{n}", "Compartment\u00a0{n}", "Fach\u00a0{n}"},
	"drawing.label": {"Tekening van dit toestel. Vak\u00a0{n} is aangeduid.", "Dessin de cet appareil. Le casier\u00a0{n} est indiqué.",
		"Drawing of this machine. Compartment\u00a0{n} is marked.", "Zeichnung dieses Geräts. Fach\u00a0{n} ist markiert."},
	"hatch.open": {"Het luik is open. Neem uw document en sluit het luik.", "La trappe est ouverte. Prenez votre document et fermez la trappe.",
		"The hatch is open. Take your document and close the hatch.", "Die Klappe ist offen. Nehmen Sie Ihr Dokument und schließen Sie die Klappe."},
	"drawing.here":  {"Dit scherm", "Cet écran", "This screen", "Dieser Bildschirm"},
	"drawing.hatch": {"Het luik", "La trappe", "The hatch", "Die Klappe"},
	"drawing.hatch.label": {"Tekening van dit toestel. Uw document komt uit het luik.", "Dessin de cet appareil. Votre document sort par la trappe.",
		"Drawing of this machine. Your document comes out of the hatch.", "Zeichnung dieses Geräts. Ihr Dokument kommt aus der Klappe."},

	// Staff at the device.
	"staff.login.title": {"Aanmelden personeel", "Connexion du personnel", "Staff login", "Anmeldung Personal"},
	"staff.login.hint": {"Scan uw badge of tik uw personeelscode in.", "Scannez votre badge ou tapez votre code personnel.",
		"Scan your badge or type your staff PIN.", "Scannen Sie Ihren Ausweis oder geben Sie Ihre Personal-PIN ein."},
	"staff.menu.title": {"Wat wilt u doen?", "Que voulez-vous faire\u00a0?", "What do you want to do?", "Was möchten Sie tun?"},
	"staff.as":         {"Aangemeld als {s}.", "Connecté en tant que {s}.", "Logged in as {s}.", "Angemeldet als {s}."},
	"staff.load":       {"Document inladen", "Déposer un document", "Load a document", "Dokument einlegen"},
	"staff.retrieve":   {"Document terugnemen", "Reprendre un document", "Take back a document", "Dokument zurücknehmen"},
	"staff.tech":       {"Technicus", "Technicien", "Technician", "Techniker"},
	"staff.unlock":     {"Blokkering pincodes opheffen", "Lever le blocage des codes PIN", "Lift the PIN lockout", "PIN-Sperre aufheben"},
	"staff.logout":     {"Afmelden", "Se déconnecter", "Log out", "Abmelden"},
	"staff.docnr":      {"Documentnummer", "Numéro du document", "Document number", "Dokumentnummer"},
	"staff.docnr.hint": {"Scan of tik het documentnummer.", "Scannez ou tapez le numéro du document.",
		"Scan or type the document number.", "Scannen oder tippen Sie die Dokumentnummer."},
	"staff.next":            {"Volgend document", "Document suivant", "Next document", "Nächstes Dokument"},
	"staff.back":            {"Terug naar het menu", "Retour au menu", "Back to the menu", "Zurück zum Menü"},
	"staff.again":           {"Opnieuw aanmelden", "Se reconnecter", "Log in again", "Erneut anmelden"},
	"title.staff_denied":    {"Niet aangemeld", "Non connecté", "Not logged in", "Nicht angemeldet"},
	"title.staff_locked":    {"Aanmelden geblokkeerd", "Connexion bloquée", "Login blocked", "Anmeldung gesperrt"},
	"title.lookups_ended":   {"Afgemeld", "Déconnecté", "Logged out", "Abgemeldet"},
	"title.lookups_paused":  {"Opzoeken gepauzeerd", "Recherche suspendue", "Lookups paused", "Suche angehalten"},
	"title.door_open":       {"De deur is open", "La porte est ouverte", "The door is open", "Die Tür ist offen"},
	"title.loaded":          {"Ingeladen", "Déposé", "Loaded", "Eingelegt"},
	"title.load_empty":      {"Niet ingeladen", "Non déposé", "Not loaded", "Nicht eingelegt"},
	"title.retrieved":       {"Teruggenomen", "Repris", "Taken back", "Zurückgenommen"},
	"title.still_there":     {"Nog in het vak", "Encore dans le casier", "Still in the compartment", "Noch im Fach"},
	"title.not_found":       {"Niet gevonden", "Introuvable", "Not found", "Nicht gefunden"},
	"title.wrong_state":     {"Nu niet mogelijk", "Pas possible maintenant", "Not possible now", "Jetzt nicht möglich"},
	"title.no_compartment":  {"Geen vrij vak", "Pas de casier libre", "No free compartment", "Kein freies Fach"},
	"title.pending":         {"Nog even wachten", "Encore un peu de patience", "Please wait a little", "Bitte noch etwas warten"},
	"title.lockout_cleared": {"Blokkering opgeheven", "Blocage levé", "Lockout lifted", "Sperre aufgehoben"},
	"title.lockout_capped":  {"Nog geblokkeerd", "Encore bloqué", "Still locked", "Noch gesperrt"},
	"title.test_open":       {"Testopening", "Ouverture de test", "Test opening", "Testöffnung"},
	"title.test_occupied":   {"Niet geopend", "Non ouvert", "Not opened", "Nicht geöffnet"},
	"next.staff.not_found":  {"Kijk het nummer na en probeer opnieuw.", "Vérifiez le numéro et réessayez.", "Check the number and try again.", "Prüfen Sie die Nummer und versuchen Sie es noch einmal."},
	"next.staff.wrong_state": {"Het nummer klopt. Kijk de toestand van het document na in de personeelsconsole.", "Le numéro est correct. Vérifiez l'état du document dans la console du personnel.",
		"The number is right. Check the document's state in the staff console.", "Die Nummer stimmt. Prüfen Sie den Zustand des Dokuments in der Personalkonsole."},
	"next.staff.load_empty":  {"Probeer het document opnieuw in te laden.", "Essayez à nouveau de déposer le document.", "Try to load the document again.", "Versuchen Sie, das Dokument noch einmal einzulegen."},
	"next.staff.still_there": {"Probeer het opnieuw of meld het.", "Réessayez ou signalez-le.", "Try again or report it.", "Versuchen Sie es noch einmal oder melden Sie es."},
	"next.staff.lockout_capped": {"Pincodes kunnen weer na de tijd hieronder. Bel zo nodig\u00a01777.", "Les codes PIN fonctionneront de nouveau après le délai ci-dessous. Appelez le\u00a01777 si nécessaire.",
		"PIN entry opens again after the time below. Call\u00a01777 if needed.", "Die PIN-Eingabe ist nach der Zeit unten wieder möglich. Rufen Sie bei Bedarf\u00a01777\u00a0an."},
	// The backend refused a test-open: it records a citizen's document in
	// the compartment, the item sensor read it empty (an alarm was raised).
	"next.staff.test_occupied": {"De sensor meldt het vak leeg: er is een alarm gemeld. Een beheerder kan het openen.",
		"Le capteur indique le casier vide\u00a0: une alarme est signalée. Un administrateur peut l'ouvrir.",
		"Its sensor reads it empty: an alarm was raised. An administrator can open it.",
		"Der Sensor meldet es leer: Ein Alarm wurde gemeldet. Ein Administrator kann es öffnen."},
	"next.staff.staff_denied": {"Meld u opnieuw aan.", "Connectez-vous à nouveau.", "Please log in again.", "Bitte melden Sie sich erneut an."},

	// The technician's screen.
	"tech.title":   {"Test en diagnose", "Test et diagnostic", "Test and diagnostics", "Test und Diagnose"},
	"tech.boards":  {"Borden", "Cartes", "Boards", "Platinen"},
	"tech.board":   {"Bord\u00a0{n}", "Carte\u00a0{n}", "Board\u00a0{n}", "Platine\u00a0{n}"},
	"tech.online":  {"Bereikbaar", "Joignable", "Reachable", "Erreichbar"},
	"tech.offline": {"Niet bereikbaar", "Injoignable", "Unreachable", "Nicht erreichbar"},
	// The automaton's hatch on its board, before its state (French: a
	// no-break space before the colon).
	"tech.hatch":     {"Het luik (bord\u00a0{n}):", "La trappe (carte\u00a0{n})\u00a0:", "The hatch (board\u00a0{n}):", "Die Klappe (Platine\u00a0{n}):"},
	"tech.errors":    {"Fouten:\u00a0{n}", "Erreurs\u00a0:\u00a0{n}", "Errors:\u00a0{n}", "Fehler:\u00a0{n}"},
	"tech.doors":     {"Vakken", "Casiers", "Compartments", "Fächer"},
	"tech.col.comp":  {"Vak", "Casier", "Compartment", "Fach"},
	"tech.col.door":  {"Deur", "Porte", "Door", "Tür"},
	"tech.col.item":  {"Inhoud", "Contenu", "Contents", "Inhalt"},
	"tech.col.test":  {"Test", "Test", "Test", "Test"},
	"tech.door.open": {"Deur open", "Porte ouverte", "Door open", "Tür offen"},
	"tech.door.shut": {"Deur dicht", "Porte fermée", "Door closed", "Tür zu"},
	"tech.item":      {"Document aanwezig", "Document présent", "Document inside", "Dokument im Fach"},
	"tech.empty":     {"Leeg", "Vide", "Empty", "Leer"},
	"tech.unknown":   {"Onbekend", "Inconnu", "Unknown", "Unbekannt"},
	"tech.test":      {"Vak\u00a0{n} openen", "Ouvrir le casier\u00a0{n}", "Open compartment\u00a0{n}", "Fach\u00a0{n} öffnen"},
	"tech.open":      {"Openen", "Ouvrir", "Open", "Öffnen"},
	"tech.notfree": {"Vak\u00a0{n} is misschien niet leeg. Het blijft dicht.", "Le casier\u00a0{n} n'est peut-être pas vide. Il reste fermé.",
		"Compartment\u00a0{n} may not be empty. It stays closed.", "Fach\u00a0{n} ist vielleicht nicht leer. Es bleibt zu."},
	"tech.refresh": {"Vernieuwen", "Actualiser", "Refresh", "Aktualisieren"},
	// Under the diagnostics' region while more of it is below (it scrolls).
	"tech.more":      {"Meer hieronder: veeg omhoog.", "La suite plus bas\u00a0: faites glisser vers le haut.", "More below: swipe up.", "Mehr darunter: nach oben wischen."},
	"tech.backlog":   {"Berichten die wachten op de server:\u00a0{n}", "Messages en attente du serveur\u00a0:\u00a0{n}", "Messages waiting for the server:\u00a0{n}", "Meldungen, die auf den Server warten:\u00a0{n}"},
	"tech.alarms":    {"Laatste alarmen", "Dernières alarmes", "Last alarms", "Letzte Alarme"},
	"tech.noalarms":  {"Geen alarm sinds de start.", "Aucune alarme depuis le démarrage.", "No alarm since start-up.", "Kein Alarm seit dem Start."},
	"tech.col.time":  {"Tijd", "Heure", "Time", "Zeit"},
	"tech.col.alarm": {"Alarm", "Alarme", "Alarm", "Alarm"},
	"tech.col.where": {"Waar", "Où", "Where", "Wo"},
	// An alarm the device cleared since, after its name ("{t}" its time).
	"tech.cleared": {"(opgeheven om\u00a0{t})", "(levée à\u00a0{t})", "(cleared at\u00a0{t})", "(aufgehoben um\u00a0{t})"},

	alarmKey(wire.AlarmDoorLeftOpen):       {"Deur bleef open", "Porte restée ouverte", "Door left open", "Tür offen gelassen"},
	alarmKey(wire.AlarmForcedDoor):         {"Deur geforceerd", "Porte forcée", "Door forced", "Tür aufgebrochen"},
	alarmKey(wire.AlarmBoardUnreachable):   {"Bord niet bereikbaar", "Carte injoignable", "Board unreachable", "Platine nicht erreichbar"},
	alarmKey(wire.AlarmSensorDisagreement): {"Sensoren spreken elkaar tegen", "Capteurs en désaccord", "Sensors disagree", "Sensoren widersprechen sich"},
	alarmKey(wire.AlarmBruteForceLockout):  {"Code-invoer geblokkeerd", "Saisie de code bloquée", "Code entry locked", "Code-Eingabe gesperrt"},
	alarmKey(wire.AlarmMechanismFault):     {"Storing mechaniek", "Panne du mécanisme", "Mechanism fault", "Störung der Mechanik"},
	alarmKey(wire.AlarmPulseUncertain):     {"Niet zeker of de deur openging", "Ouverture incertaine", "Opening uncertain", "Öffnung unsicher"},
	alarmKey(wire.AlarmJournalDamaged):     {"Logboek beschadigd", "Journal endommagé", "Journal damaged", "Journal beschädigt"},
	alarmKey(wire.AlarmBoardRebooting):     {"Bord start steeds opnieuw", "La carte redémarre sans cesse", "Board keeps restarting", "Platine startet immer wieder neu"},
	alarmKey(wire.AlarmJournalFull):        {"Schijf vol: geen deur gaat open", "Disque plein\u00a0: aucune porte ne s'ouvre", "Disk full: no door opens", "Datenträger voll: keine Tür öffnet"},
	alarmKey(wire.AlarmOfflineCacheUntrusted): {"Offline codes geweigerd tot de volledige synchronisatie", "Codes hors ligne refusés jusqu'à la synchronisation complète",
		"Offline codes refused until the full sync", "Offline-Codes abgelehnt bis zur vollständigen Synchronisierung"},
}
