package engine

import (
	"strconv"
	"strings"
	"time"
)

// Langs are the languages of kiosk messages.
var langs = []string{"nl", "fr", "en", "de"}

// messages holds what the kiosk screen says per state, in nl, fr, en, de.
// "{n}" is the compartment number, "{m}" minutes, "{t}" until when a lock
// holds, with the word for "until" (Screen.Until, UntilText).
var messages = map[string][4]string{
	StateIdle: {
		"Scan uw QR-code of tik uw pincode in.",
		"Scannez votre code QR ou tapez votre code PIN.",
		"Scan your QR code or type your PIN.",
		"Scannen Sie Ihren QR-Code oder geben Sie Ihre PIN ein."},
	StateVerifying: {
		"Even geduld, uw code wordt gecontroleerd.",
		"Un instant, nous vérifions votre code.",
		"One moment, we are checking your code.",
		"Einen Moment, wir prüfen Ihren Code."},
	StateNeedBirthDate: {
		"Geef uw geboortedatum in.",
		"Entrez votre date de naissance.",
		"Please enter your date of birth.",
		"Bitte geben Sie Ihr Geburtsdatum ein."},
	StatePresenting: {
		"Uw document wordt opgehaald. Even geduld.",
		"Votre document arrive. Un instant.",
		"Your document is on its way. One moment.",
		"Ihr Dokument wird geholt. Einen Moment."},
	StateOpen: {
		"Vak\u00a0{n} is open. Neem uw document en sluit de deur.",
		"Le casier\u00a0{n} est ouvert. Prenez votre document et fermez la porte.",
		"Compartment\u00a0{n} is open. Take your document and close the door.",
		"Fach\u00a0{n} ist offen. Nehmen Sie Ihr Dokument und schließen Sie die Tür."},
	StateDone: {
		"Dank u. Uw document is afgehaald. Tot ziens!",
		"Merci. Votre document a été retiré. Au revoir\u00a0!",
		"Thank you. You have collected your document. Goodbye!",
		"Danke. Sie haben Ihr Dokument abgeholt. Auf Wiedersehen!"},
	StateNotCollected: {
		"Uw document ligt nog in vak\u00a0{n}. U kunt uw code nog {m}\u00a0minuten opnieuw gebruiken.",
		"Votre document est toujours dans le casier\u00a0{n}. Votre code reste valable {m}\u00a0minutes.",
		"Your document is still in compartment\u00a0{n}. Your code stays valid for {m}\u00a0more minutes.",
		"Ihr Dokument liegt noch in Fach\u00a0{n}. Ihr Code bleibt noch {m}\u00a0Minuten gültig."},
	StateNotOpened: {
		"De deur ging niet open. Probeer opnieuw of vraag hulp aan het loket.",
		"La porte ne s'est pas ouverte. Réessayez ou demandez de l'aide au guichet.",
		"The door did not open. Try again or ask for help at the counter.",
		"Die Tür hat sich nicht geöffnet. Versuchen Sie es erneut oder fragen Sie am Schalter."},
	StateWrongCode: {
		"Deze code is niet geldig. Controleer hem en probeer opnieuw.",
		"Ce code n'est pas valable. Vérifiez-le et réessayez.",
		"This code is not valid. Please check it and try again.",
		"Dieser Code ist nicht gültig. Bitte prüfen Sie ihn und versuchen Sie es erneut."},
	StateExpired: {
		"Deze code is vervallen. Neem contact op met het stadhuis.",
		"Ce code a expiré. Contactez l'hôtel de ville.",
		"This code has expired. Please contact the city hall.",
		"Dieser Code ist abgelaufen. Bitte wenden Sie sich an das Rathaus."},
	StateAlreadyCollected: {
		"Dit document werd al afgehaald.",
		"Ce document a déjà été retiré.",
		"This document has already been collected.",
		"Dieses Dokument wurde bereits abgeholt."},
	StatePending: {
		"Uw document is nog niet afgehaald, maar het vak kan nu niet open. Probeer het over enkele minuten opnieuw of bel\u00a01777.",
		"Votre document n'a pas encore été retiré, mais le casier ne peut pas s'ouvrir maintenant. Réessayez dans quelques minutes ou appelez le\u00a01777.",
		"Your document has not been collected yet, but the compartment cannot open right now. Try again in a few minutes or call\u00a01777.",
		"Ihr Dokument wurde noch nicht abgeholt, aber das Fach kann sich gerade nicht öffnen. Versuchen Sie es in einigen Minuten erneut oder rufen Sie\u00a01777\u00a0an."},
	StateLockedOut: {
		"Te veel foute pincodes. Scan uw QR-code of vraag hulp aan het loket.",
		"Trop de codes PIN erronés. Scannez votre code QR ou demandez de l'aide au guichet.",
		"Too many wrong PINs. Scan your QR code or ask for help at the counter.",
		"Zu viele falsche PINs. Scannen Sie Ihren QR-Code oder fragen Sie am Schalter."},
	StateOutOfOrder: {
		"Dit vak kan nu niet open. Vraag hulp aan het loket.",
		"Ce casier ne peut pas s'ouvrir maintenant. Demandez de l'aide au guichet.",
		"This compartment cannot open right now. Please ask for help at the counter.",
		"Dieses Fach kann gerade nicht geöffnet werden. Bitte fragen Sie am Schalter."},
	StateDeviceOutOfOrder: {
		"Dit toestel is buiten gebruik. Bel\u00a01777, wij helpen u verder.",
		"Cet appareil est hors service. Appelez le\u00a01777, nous vous aiderons.",
		"This machine is out of order. Please call\u00a01777 for help.",
		"Dieses Gerät ist außer Betrieb. Bitte rufen Sie\u00a01777\u00a0an, wir helfen Ihnen weiter."},
	StateBusy: {
		"Een ogenblik, het toestel is bezig.",
		"Un instant, l'appareil est occupé.",
		"One moment, the machine is busy.",
		"Einen Moment, das Gerät ist beschäftigt."},
	StateStaff: {
		"Personeel: scan een document om het in te laden of terug te nemen.",
		"Personnel\u00a0: scannez un document pour le déposer ou le reprendre.",
		"Staff: scan a document to load it or take it back.",
		"Personal: Dokument scannen, um es einzulegen oder zurückzunehmen."},
	StateStaffDenied: {
		"Aanmelding geweigerd.",
		"Connexion refusée.",
		"Login refused.",
		"Anmeldung abgelehnt."},
	// {t} says until when the lock holds, in the device's local time
	// (UntilText): "until 17:42", "until 08/12 at 17:42", "jusqu'au
	// 08/12 à 17:42", on the staff console's clock.
	StateStaffLocked: {
		"Te veel mislukte aanmeldingen op dit toestel. Aanmelden is hier geblokkeerd {t}.",
		"Trop de connexions échouées sur cet appareil. La connexion est bloquée ici {t}.",
		"Too many failed logins on this machine. Login here is blocked {t}.",
		"Zu viele fehlgeschlagene Anmeldungen an diesem Gerät. Die Anmeldung ist hier {t} gesperrt."},
	StateStaffLockedToday: {
		"Te veel mislukte aanmeldingen op dit toestel vandaag. Aanmelden is hier geblokkeerd {t}. Gebruik tot dan de personeelsconsole of bel de servicedesk.",
		"Trop de connexions échouées sur cet appareil aujourd'hui. La connexion est bloquée ici {t}. D'ici là, utilisez la console du personnel ou appelez le service desk.",
		"Too many failed logins on this machine today. Login here is blocked {t}. Until then, use the staff console or call the service desk.",
		"Zu viele fehlgeschlagene Anmeldungen an diesem Gerät heute. Die Anmeldung ist hier {t} gesperrt. Nutzen Sie bis dahin die Personalkonsole oder rufen Sie den Servicedesk an."},
	StateLookupsEnded: {
		"Te veel documentnummers niet gevonden. Voor de veiligheid bent u afgemeld. Meld u opnieuw aan of gebruik de personeelsconsole.",
		"Trop de numéros de document introuvables. Par sécurité, vous êtes déconnecté. Reconnectez-vous ou utilisez la console du personnel.",
		"Too many document numbers not found. For safety you are logged out. Log in again or use the staff console.",
		"Zu viele Dokumentnummern nicht gefunden. Zur Sicherheit wurden Sie abgemeldet. Melden Sie sich erneut an oder nutzen Sie die Personalkonsole."},
	StateLookupsPaused: {
		"Te veel documentnummers niet gevonden op dit toestel. Documenten opzoeken is hier gepauzeerd {t}. Gebruik tot dan de personeelsconsole of bel de servicedesk.",
		"Trop de numéros de document introuvables sur cet appareil. La recherche de documents est suspendue ici {t}. D'ici là, utilisez la console du personnel ou appelez le service desk.",
		"Too many document numbers not found on this machine. Looking up documents here is paused {t}. Until then, use the staff console or call the service desk.",
		"Zu viele Dokumentnummern an diesem Gerät nicht gefunden. Die Dokumentsuche ist hier {t} angehalten. Nutzen Sie bis dahin die Personalkonsole oder rufen Sie den Servicedesk an."},
	StateLoading: {
		"Leg het document in vak\u00a0{n} en sluit de deur.",
		"Placez le document dans le casier\u00a0{n} et fermez la porte.",
		"Put the document in compartment\u00a0{n} and close the door.",
		"Legen Sie das Dokument in Fach\u00a0{n} und schließen Sie die Tür."},
	StateLoaded: {
		"Document ingeladen in vak\u00a0{n}.",
		"Document déposé dans le casier\u00a0{n}.",
		"Document loaded in compartment\u00a0{n}.",
		"Dokument in Fach\u00a0{n} eingelegt."},
	StateLoadEmpty: {
		"Vak\u00a0{n} is leeg: het document werd niet ingeladen.",
		"Le casier\u00a0{n} est vide\u00a0: le document n'a pas été déposé.",
		"Compartment\u00a0{n} is empty: the document was not loaded.",
		"Fach\u00a0{n} ist leer: Das Dokument wurde nicht eingelegt."},
	StateRetrieving: {
		"Neem het document uit vak\u00a0{n} en sluit de deur.",
		"Prenez le document du casier\u00a0{n} et fermez la porte.",
		"Take the document out of compartment\u00a0{n} and close the door.",
		"Nehmen Sie das Dokument aus Fach\u00a0{n} und schließen Sie die Tür."},
	StateRetrieved: {
		"Document teruggenomen uit vak\u00a0{n}.",
		"Document repris du casier\u00a0{n}.",
		"Document taken back from compartment\u00a0{n}.",
		"Dokument aus Fach\u00a0{n} zurückgenommen."},
	StateStillThere: {
		"Het document ligt nog in vak\u00a0{n}.",
		"Le document est toujours dans le casier\u00a0{n}.",
		"The document is still in compartment\u00a0{n}.",
		"Das Dokument liegt noch in Fach\u00a0{n}."},
	StateNotFound: {
		"Document niet gevonden voor dit toestel.",
		"Document introuvable pour cet appareil.",
		"Document not found for this machine.",
		"Dokument für dieses Gerät nicht gefunden."},
	StateWrongState: {
		"Dit document kan hier nu niet ingeladen of teruggenomen worden.",
		"Ce document ne peut pas être déposé ou repris ici maintenant.",
		"This document cannot be loaded or taken back here now.",
		"Dieses Dokument kann hier jetzt nicht eingelegt oder zurückgenommen werden."},
	StateNoCompartment: {
		"Geen vrij vak beschikbaar.",
		"Aucun casier libre.",
		"No free compartment available.",
		"Kein freies Fach verfügbar."},
	StateTestOpen: {
		"Testopening van vak\u00a0{n}.",
		"Ouverture de test du casier\u00a0{n}.",
		"Test opening of compartment\u00a0{n}.",
		"Testöffnung von Fach\u00a0{n}."},
	StateTestOccupied: {
		"Vak\u00a0{n} bevat het document van een burger: het werd niet geopend.",
		"Le casier\u00a0{n} contient le document d'un citoyen\u00a0: il n'a pas été ouvert.",
		"Compartment\u00a0{n} holds a citizen's document: it was not opened.",
		"Fach\u00a0{n} enthält das Dokument eines Bürgers: Es wurde nicht geöffnet."},
	StateLockoutCleared: {
		"De blokkering van de pincodes is opgeheven.",
		"Le blocage des codes PIN est levé.",
		"PIN entry is unlocked.",
		"Die Sperre der PIN-Eingabe ist aufgehoben."},
	StateLockoutCapped: {
		"De blokkering is opgeheven, maar het dagmaximum aan foute pincodes is bereikt: pincodes blijven nog even geblokkeerd. QR-codes werken.",
		"Le blocage est levé, mais le maximum journalier de codes PIN erronés est atteint\u00a0: les codes PIN restent bloqués un moment. Les codes QR fonctionnent.",
		"The lockout is lifted, but the daily limit of wrong PINs is reached: PIN entry stays locked for a while. QR codes work.",
		"Die Sperre ist aufgehoben, aber das Tageslimit falscher PINs ist erreicht: Die PIN-Eingabe bleibt noch gesperrt. QR-Codes funktionieren."},
	StateError: {
		"Er ging iets mis. Vraag hulp aan het loket.",
		"Un problème est survenu. Demandez de l'aide au guichet.",
		"Something went wrong. Please ask for help at the counter.",
		"Etwas ist schiefgelaufen. Bitte fragen Sie am Schalter."},
}

// Message returns the kiosk text of state in lang (nl when lang is unknown)
// with the compartment number n and minutes m filled in.
func Message(state, lang string, n, m int) string {
	t, ok := messages[state]
	if !ok {
		t = messages[StateError]
	}
	i := 0
	for k, l := range langs {
		if l == lang {
			i = k
		}
	}
	return fillNM(t[i], n, m)
}

// fillNM replaces every "{n}" in t with n and every "{m}" with m, as
// strings.NewReplacer("{n}", n, "{m}", m).Replace(t) does, in one pass and
// one allocation: a replacer built per call cost about 19 KB of garbage per
// kiosk tap (setScreen fills every language at every screen change).
func fillNM(t string, n, m int) string {
	if !strings.Contains(t, "{") {
		return t
	}
	var b strings.Builder
	b.Grow(len(t) + 8)
	for i := 0; i < len(t); i++ {
		if t[i] == '{' && i+2 < len(t) && t[i+2] == '}' {
			switch t[i+1] {
			case 'n':
				b.WriteString(strconv.Itoa(n))
				i += 2
				continue
			case 'm':
				b.WriteString(strconv.Itoa(m))
				i += 2
				continue
			}
		}
		b.WriteByte(t[i])
	}
	return b.String()
}

// UntilText says until when a lock that ends at until holds, as people
// at the device read it at now, in now's location (the device's local
// time: pass time.Now() or now.In(time.Local)): the word for "until" that
// fits what follows, then the time of day on the 24-hour clock, hours and
// minutes, written "17:42" in every language, as the staff console writes
// every time of day (its catalogue's fmt.clock) so that staff read one
// clock at the device and at the counter (not "17.42 uur" here and
// "17:42" there); after the day and month when it ends on another day,
// separated as the console writes dates in that language (nl "08-12", fr
// and en "08/12", de "08.12."), joined to the time as each language says
// it. A date takes its article where the language wants one: "tot 17:42",
// "tot 08-12 om 17:42"; "jusqu'à 17:42", "jusqu'au 08/12 à 17:42" (never
// "jusqu'à 08/12"); "until 08/12 at 17:42"; "bis 17:42", "bis zum 08.12.
// um 17:42". Not "tomorrow": a screen keeps its text until it changes,
// and "until tomorrow at 00:05" read after midnight is a day off; a date
// stays true. A no-break space joins the time to the word before it and
// the date to its word ("om\u00a017:42", "tot\u00a008-12"), so a line
// never ends on "om". The messages hold it whole ({t}): "Aanmelden is
// hier geblokkeerd {t}."
func UntilText(lang string, until, now time.Time) string {
	const nb = "\u00a0"
	at := map[string]string{"nl": " om" + nb, "fr": " à" + nb, "en": " at" + nb, "de": " um" + nb}
	word := map[string]string{"nl": "tot" + nb, "fr": "jusqu'à" + nb, "en": "until" + nb, "de": "bis" + nb}
	u, n := until.In(now.Location()), now
	clock := u.Format("15:04")
	uy, um, ud := u.Date()
	ny, nm, nd := n.Date()
	if uy == ny && um == nm && ud == nd {
		return word[lang] + clock
	}
	switch lang {
	case "nl":
		return "tot" + nb + u.Format("02-01") + at[lang] + clock
	case "fr":
		return "jusqu'au" + nb + u.Format("02/01") + at[lang] + clock
	case "de":
		return "bis zum" + nb + u.Format("02.01.") + at[lang] + clock
	}
	return "until" + nb + u.Format("02/01") + at[lang] + clock
}

// Langs returns the languages of kiosk messages: nl, fr, en, de (the
// kiosk screen's catalogue, controller/kiosk/screen, has the same).
func Langs() []string { return append([]string(nil), langs...) }

// States returns every kiosk screen state, in the order of their
// constants.
func States() []string {
	return []string{StateIdle, StateVerifying, StateNeedBirthDate, StatePresenting, StateOpen, StateDone,
		StateNotCollected, StateNotOpened, StateWrongCode, StateExpired, StateAlreadyCollected, StatePending, StateLockedOut,
		StateOutOfOrder, StateDeviceOutOfOrder, StateBusy, StateStaff, StateStaffDenied, StateStaffLocked, StateStaffLockedToday,
		StateLookupsEnded, StateLookupsPaused, StateLoading, StateLoaded, StateLoadEmpty,
		StateRetrieving, StateRetrieved, StateStillThere, StateNotFound, StateWrongState, StateNoCompartment, StateTestOpen, StateTestOccupied, StateLockoutCleared,
		StateLockoutCapped, StateError}
}

// MessageText returns the message of state in lang as written, with its
// "{n}" (compartment) and "{m}" (minutes) placeholders; ok is false when
// there is none: no fallback to another state or language. The kiosk
// screen's catalogue takes the state messages from here.
func MessageText(state, lang string) (text string, ok bool) {
	t, found := messages[state]
	if !found {
		return "", false
	}
	for k, l := range langs {
		if l == lang && t[k] != "" {
			return t[k], true
		}
	}
	return "", false
}

// ValidLang reports whether lang is one of nl, fr, en, de.
func ValidLang(lang string) bool {
	for _, l := range langs {
		if l == lang {
			return true
		}
	}
	return false
}
