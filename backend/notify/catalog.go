package notify

// Message names in the catalogue.
const (
	// MsgReady: the document is in its compartment (with the codes).
	MsgReady = "ready"
	// MsgReminder: the deadline is near (without codes: they are not stored).
	MsgReminder = "reminder"
	// MsgReceipt: the document was collected.
	MsgReceipt = "receipt"
	// MsgReturned: the deadline passed; the document is back at the counter.
	MsgReturned = "returned"
)

// Languages are the supported languages, the first being the fallback.
var Languages = []string{"nl", "fr", "en", "de"}

// entry is one message in one language; every string is a text/template
// over MessageData.
type entry struct {
	Subject    string
	Paragraphs []string
	SMS        string
}

// catalogue[language][message].
var catalogue = map[string]map[string]entry{
	"nl": {
		MsgReady: {
			Subject: "Uw document ligt klaar in de afhaalkluis",
			Paragraphs: []string{
				"Beste {{.FirstName}},",
				"Uw document ligt klaar: {{.Doc}}. U kunt het ophalen, ook 's avonds en in het weekend.",
				"Waar? {{.SiteName}}, {{.SiteAddress}}. Afhaalkluis {{.DeviceName}}, vak {{.Compartment}}.",
				"Tot wanneer? Tot {{.Deadline}}.",
				"Wat hebt u nodig? Toon de QR-code aan de kluis. Of typ uw pincode: {{.PIN}}. Typ daarna uw geboortedatum.",
				"Volg uw document: {{.TrackURL}}",
				"Hebt u hulp nodig? Bel gratis 1777.",
				"{{.Sender}}",
			},
			SMS: "{{.Sender}}: uw {{.Doc}} ligt klaar in {{.SiteName}}, kluis {{.DeviceName}}, vak {{.Compartment}}, tot {{.Deadline}}. Pincode: {{.PIN}} + uw geboortedatum. Info: {{.TrackURL}} Hulp: 1777",
		},
		MsgReminder: {
			Subject: "Herinnering: haal uw document op",
			Paragraphs: []string{
				"Beste {{.FirstName}},",
				"Uw document ligt nog in de afhaalkluis: {{.Doc}}.",
				"Haal het op voor {{.Deadline}}. Daarna gaat het terug naar de balie.",
				"Waar? {{.SiteName}}, {{.SiteAddress}}. Afhaalkluis {{.DeviceName}}, vak {{.Compartment}}.",
				"Gebruik de QR-code of de pincode uit ons eerste bericht. Typ bij de pincode ook uw geboortedatum.",
				"Volg uw document: {{.TrackURL}}",
				"Hebt u hulp nodig? Bel gratis 1777.",
				"{{.Sender}}",
			},
			SMS: "{{.Sender}}: uw {{.Doc}} ligt nog in {{.SiteName}}, kluis {{.DeviceName}}, vak {{.Compartment}}. Haal het op voor {{.Deadline}}. Info: {{.TrackURL}} Hulp: 1777",
		},
		MsgReceipt: {
			Subject: "U hebt uw document opgehaald",
			Paragraphs: []string{
				"Beste {{.FirstName}},",
				"U hebt uw document opgehaald: {{.Doc}}. Dat was op {{.When}}.",
				"Was u dat niet? Bel dan meteen 1777.",
				"{{.Sender}}",
			},
			SMS: "{{.Sender}}: uw {{.Doc}} is opgehaald op {{.When}}. Was u dat niet? Bel 1777.",
		},
		MsgReturned: {
			Subject: "Uw document ligt nu aan de balie",
			Paragraphs: []string{
				"Beste {{.FirstName}},",
				"U hebt uw document niet opgehaald voor {{.Deadline}}: {{.Doc}}.",
				"Het ligt nu aan de balie van {{.SiteName}}, {{.SiteAddress}}. Kom het daar ophalen tijdens de openingsuren.",
				"Volg uw document: {{.TrackURL}}",
				"Hebt u hulp nodig? Bel gratis 1777.",
				"{{.Sender}}",
			},
			SMS: "{{.Sender}}: uw {{.Doc}} ligt nu aan de balie van {{.SiteName}}. Info: {{.TrackURL}} Hulp: 1777",
		},
	},
	"fr": {
		MsgReady: {
			Subject: "Votre document vous attend dans le casier",
			Paragraphs: []string{
				"Bonjour {{.FirstName}},",
				"Votre document est prêt : {{.Doc}}. Vous pouvez le retirer, aussi le soir et le week-end.",
				"Où ? {{.SiteName}}, {{.SiteAddress}}. Casier {{.DeviceName}}, case {{.Compartment}}.",
				"Jusqu'à quand ? Jusqu'au {{.Deadline}}.",
				"De quoi avez-vous besoin ? Montrez le code QR au casier. Ou tapez votre code PIN : {{.PIN}}. Tapez ensuite votre date de naissance.",
				"Suivez votre document : {{.TrackURL}}",
				"Besoin d'aide ? Appelez gratuitement le 1777.",
				"{{.Sender}}",
			},
			SMS: "{{.Sender}} : votre {{.Doc}} vous attend à {{.SiteName}}, casier {{.DeviceName}}, case {{.Compartment}}, jusqu'au {{.Deadline}}. PIN : {{.PIN}} + votre date de naissance. Info : {{.TrackURL}} Aide : 1777",
		},
		MsgReminder: {
			Subject: "Rappel : venez retirer votre document",
			Paragraphs: []string{
				"Bonjour {{.FirstName}},",
				"Votre document est encore dans le casier : {{.Doc}}.",
				"Retirez-le avant le {{.Deadline}}. Ensuite, il retourne au guichet.",
				"Où ? {{.SiteName}}, {{.SiteAddress}}. Casier {{.DeviceName}}, case {{.Compartment}}.",
				"Utilisez le code QR ou le code PIN de notre premier message. Avec le code PIN, tapez aussi votre date de naissance.",
				"Suivez votre document : {{.TrackURL}}",
				"Besoin d'aide ? Appelez gratuitement le 1777.",
				"{{.Sender}}",
			},
			SMS: "{{.Sender}} : votre {{.Doc}} est encore à {{.SiteName}}, casier {{.DeviceName}}, case {{.Compartment}}. Retirez-le avant le {{.Deadline}}. Info : {{.TrackURL}} Aide : 1777",
		},
		MsgReceipt: {
			Subject: "Vous avez retiré votre document",
			Paragraphs: []string{
				"Bonjour {{.FirstName}},",
				"Vous avez retiré votre document : {{.Doc}}. C'était le {{.When}}.",
				"Ce n'était pas vous ? Appelez tout de suite le 1777.",
				"{{.Sender}}",
			},
			SMS: "{{.Sender}} : votre {{.Doc}} a été retiré le {{.When}}. Ce n'était pas vous ? Appelez le 1777.",
		},
		MsgReturned: {
			Subject: "Votre document est maintenant au guichet",
			Paragraphs: []string{
				"Bonjour {{.FirstName}},",
				"Vous n'avez pas retiré votre document avant le {{.Deadline}} : {{.Doc}}.",
				"Il est maintenant au guichet de {{.SiteName}}, {{.SiteAddress}}. Venez le chercher pendant les heures d'ouverture.",
				"Suivez votre document : {{.TrackURL}}",
				"Besoin d'aide ? Appelez gratuitement le 1777.",
				"{{.Sender}}",
			},
			SMS: "{{.Sender}} : votre {{.Doc}} est maintenant au guichet de {{.SiteName}}. Info : {{.TrackURL}} Aide : 1777",
		},
	},
	"en": {
		MsgReady: {
			Subject: "Your document is ready in the pickup locker",
			Paragraphs: []string{
				"Dear {{.FirstName}},",
				"Your document is ready: {{.Doc}}. You can collect it, also in the evening and at the weekend.",
				"Where? {{.SiteName}}, {{.SiteAddress}}. Locker {{.DeviceName}}, compartment {{.Compartment}}.",
				"Until when? Until {{.Deadline}}.",
				"What do you need? Show the QR code to the locker. Or type your PIN: {{.PIN}}. Then type your date of birth.",
				"Follow your document: {{.TrackURL}}",
				"Do you need help? Call 1777 for free.",
				"{{.Sender}}",
			},
			SMS: "{{.Sender}}: your {{.Doc}} is ready at {{.SiteName}}, locker {{.DeviceName}}, compartment {{.Compartment}}, until {{.Deadline}}. PIN: {{.PIN}} + your date of birth. Info: {{.TrackURL}} Help: 1777",
		},
		MsgReminder: {
			Subject: "Reminder: collect your document",
			Paragraphs: []string{
				"Dear {{.FirstName}},",
				"Your document is still in the pickup locker: {{.Doc}}.",
				"Collect it before {{.Deadline}}. After that it goes back to the counter.",
				"Where? {{.SiteName}}, {{.SiteAddress}}. Locker {{.DeviceName}}, compartment {{.Compartment}}.",
				"Use the QR code or the PIN from our first message. With the PIN, also type your date of birth.",
				"Follow your document: {{.TrackURL}}",
				"Do you need help? Call 1777 for free.",
				"{{.Sender}}",
			},
			SMS: "{{.Sender}}: your {{.Doc}} is still at {{.SiteName}}, locker {{.DeviceName}}, compartment {{.Compartment}}. Collect it before {{.Deadline}}. Info: {{.TrackURL}} Help: 1777",
		},
		MsgReceipt: {
			Subject: "You have collected your document",
			Paragraphs: []string{
				"Dear {{.FirstName}},",
				"You have collected your document: {{.Doc}}. That was on {{.When}}.",
				"Was this not you? Call 1777 at once.",
				"{{.Sender}}",
			},
			SMS: "{{.Sender}}: your {{.Doc}} was collected on {{.When}}. Was this not you? Call 1777.",
		},
		MsgReturned: {
			Subject: "Your document is now at the counter",
			Paragraphs: []string{
				"Dear {{.FirstName}},",
				"You did not collect your document before {{.Deadline}}: {{.Doc}}.",
				"It is now at the counter of {{.SiteName}}, {{.SiteAddress}}. Please collect it there during opening hours.",
				"Follow your document: {{.TrackURL}}",
				"Do you need help? Call 1777 for free.",
				"{{.Sender}}",
			},
			SMS: "{{.Sender}}: your {{.Doc}} is now at the counter of {{.SiteName}}. Info: {{.TrackURL}} Help: 1777",
		},
	},
	"de": {
		MsgReady: {
			Subject: "Ihr Dokument liegt im Abholschrank bereit",
			Paragraphs: []string{
				"Guten Tag {{.FirstName}},",
				"Ihr Dokument liegt bereit: {{.Doc}}. Sie können es abholen, auch abends und am Wochenende.",
				"Wo? {{.SiteName}}, {{.SiteAddress}}. Abholschrank {{.DeviceName}}, Fach {{.Compartment}}.",
				"Bis wann? Bis {{.Deadline}}.",
				"Was brauchen Sie? Zeigen Sie den QR-Code am Schrank. Oder tippen Sie Ihre PIN: {{.PIN}}. Tippen Sie danach Ihr Geburtsdatum.",
				"Verfolgen Sie Ihr Dokument: {{.TrackURL}}",
				"Brauchen Sie Hilfe? Rufen Sie kostenlos 1777 an.",
				"{{.Sender}}",
			},
			SMS: "{{.Sender}}: Ihr Dokument ({{.Doc}}) liegt bereit in {{.SiteName}}, Schrank {{.DeviceName}}, Fach {{.Compartment}}, bis {{.Deadline}}. PIN: {{.PIN}} + Ihr Geburtsdatum. Info: {{.TrackURL}} Hilfe: 1777",
		},
		MsgReminder: {
			Subject: "Erinnerung: Holen Sie Ihr Dokument ab",
			Paragraphs: []string{
				"Guten Tag {{.FirstName}},",
				"Ihr Dokument liegt noch im Abholschrank: {{.Doc}}.",
				"Holen Sie es bis {{.Deadline}} ab. Danach geht es zurück an den Schalter.",
				"Wo? {{.SiteName}}, {{.SiteAddress}}. Abholschrank {{.DeviceName}}, Fach {{.Compartment}}.",
				"Nutzen Sie den QR-Code oder die PIN aus unserer ersten Nachricht. Tippen Sie mit der PIN auch Ihr Geburtsdatum.",
				"Verfolgen Sie Ihr Dokument: {{.TrackURL}}",
				"Brauchen Sie Hilfe? Rufen Sie kostenlos 1777 an.",
				"{{.Sender}}",
			},
			SMS: "{{.Sender}}: Ihr Dokument ({{.Doc}}) liegt noch in {{.SiteName}}, Schrank {{.DeviceName}}, Fach {{.Compartment}}. Holen Sie es bis {{.Deadline}} ab. Info: {{.TrackURL}} Hilfe: 1777",
		},
		MsgReceipt: {
			Subject: "Sie haben Ihr Dokument abgeholt",
			Paragraphs: []string{
				"Guten Tag {{.FirstName}},",
				"Sie haben Ihr Dokument abgeholt: {{.Doc}}. Das war am {{.When}}.",
				"Waren Sie das nicht? Rufen Sie sofort 1777 an.",
				"{{.Sender}}",
			},
			SMS: "{{.Sender}}: Ihr Dokument ({{.Doc}}) wurde am {{.When}} abgeholt. Waren Sie das nicht? Rufen Sie 1777 an.",
		},
		MsgReturned: {
			Subject: "Ihr Dokument liegt jetzt am Schalter",
			Paragraphs: []string{
				"Guten Tag {{.FirstName}},",
				"Sie haben Ihr Dokument nicht bis {{.Deadline}} abgeholt: {{.Doc}}.",
				"Es liegt jetzt am Schalter von {{.SiteName}}, {{.SiteAddress}}. Holen Sie es dort während der Öffnungszeiten ab.",
				"Verfolgen Sie Ihr Dokument: {{.TrackURL}}",
				"Brauchen Sie Hilfe? Rufen Sie kostenlos 1777 an.",
				"{{.Sender}}",
			},
			SMS: "{{.Sender}}: Ihr Dokument ({{.Doc}}) liegt jetzt am Schalter von {{.SiteName}}. Info: {{.TrackURL}} Hilfe: 1777",
		},
	},
}

// docNames are the document kinds in each language.
var docNames = map[string]map[string]string{
	"nl": {"eid": "elektronische identiteitskaart (eID)", "kids_id": "Kids-ID", "residence_card": "verblijfskaart", "passport": "paspoort", "driving_licence": "rijbewijs"},
	"fr": {"eid": "carte d'identité électronique (eID)", "kids_id": "Kids-ID", "residence_card": "carte de séjour", "passport": "passeport", "driving_licence": "permis de conduire"},
	"en": {"eid": "electronic identity card (eID)", "kids_id": "Kids-ID", "residence_card": "residence card", "passport": "passport", "driving_licence": "driving licence"},
	"de": {"eid": "elektronischer Personalausweis (eID)", "kids_id": "Kids-ID", "residence_card": "Aufenthaltskarte", "passport": "Reisepass", "driving_licence": "Führerschein"},
}

// months are the month names per language, January first.
var months = map[string][12]string{
	"nl": {"januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september", "oktober", "november", "december"},
	"fr": {"janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre"},
	"en": {"January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"},
	"de": {"Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober", "November", "Dezember"},
}

// ui holds the fixed words of the slip and the track page.
var ui = map[string]map[string]string{
	"nl": {
		"slip.title": "Afhaalbewijs", "slip.pin": "Pincode", "slip.dob": "Typ daarna uw geboortedatum.",
		"slip.qr": "Toon deze QR-code aan de kluis.", "slip.where": "Waar", "slip.until": "Tot",
		"slip.compartment": "vak", "slip.locker": "Afhaalkluis", "slip.help": "Hulp nodig? Bel gratis 1777.",
		"track.title": "Uw document volgen", "track.hello": "Dag", "track.status": "Status",
		"track.where": "Waar", "track.until": "Ophalen tot", "track.help": "Hulp nodig? Bel gratis 1777.",
		"track.language": "Taal", "track.unknown": "Dit document vinden we niet. Controleer de link of bel 1777.",
		"status.preparing": "We maken uw document klaar.", "status.ready": "Uw document ligt klaar in de afhaalkluis.",
		"status.collected": "U hebt uw document opgehaald.", "status.returning": "De termijn is voorbij. Uw document gaat terug naar de balie.",
		"status.counter": "Uw document ligt aan de balie.", "status.cancelled": "Deze afhaling is geannuleerd. Bel 1777 voor meer uitleg.",
	},
	"fr": {
		"slip.title": "Bon de retrait", "slip.pin": "Code PIN", "slip.dob": "Tapez ensuite votre date de naissance.",
		"slip.qr": "Montrez ce code QR au casier.", "slip.where": "Où", "slip.until": "Jusqu'au",
		"slip.compartment": "case", "slip.locker": "Casier", "slip.help": "Besoin d'aide ? Appelez gratuitement le 1777.",
		"track.title": "Suivre votre document", "track.hello": "Bonjour", "track.status": "Statut",
		"track.where": "Où", "track.until": "À retirer jusqu'au", "track.help": "Besoin d'aide ? Appelez gratuitement le 1777.",
		"track.language": "Langue", "track.unknown": "Nous ne trouvons pas ce document. Vérifiez le lien ou appelez le 1777.",
		"status.preparing": "Nous préparons votre document.", "status.ready": "Votre document vous attend dans le casier.",
		"status.collected": "Vous avez retiré votre document.", "status.returning": "Le délai est passé. Votre document retourne au guichet.",
		"status.counter": "Votre document est au guichet.", "status.cancelled": "Ce retrait est annulé. Appelez le 1777 pour en savoir plus.",
	},
	"en": {
		"slip.title": "Pickup slip", "slip.pin": "PIN", "slip.dob": "Then type your date of birth.",
		"slip.qr": "Show this QR code to the locker.", "slip.where": "Where", "slip.until": "Until",
		"slip.compartment": "compartment", "slip.locker": "Locker", "slip.help": "Need help? Call 1777 for free.",
		"track.title": "Follow your document", "track.hello": "Hello", "track.status": "Status",
		"track.where": "Where", "track.until": "Collect until", "track.help": "Need help? Call 1777 for free.",
		"track.language": "Language", "track.unknown": "We cannot find this document. Check the link or call 1777.",
		"status.preparing": "We are preparing your document.", "status.ready": "Your document is ready in the pickup locker.",
		"status.collected": "You have collected your document.", "status.returning": "The deadline has passed. Your document goes back to the counter.",
		"status.counter": "Your document is at the counter.", "status.cancelled": "This pickup was cancelled. Call 1777 to know more.",
	},
	"de": {
		"slip.title": "Abholschein", "slip.pin": "PIN", "slip.dob": "Tippen Sie danach Ihr Geburtsdatum.",
		"slip.qr": "Zeigen Sie diesen QR-Code am Schrank.", "slip.where": "Wo", "slip.until": "Bis",
		"slip.compartment": "Fach", "slip.locker": "Abholschrank", "slip.help": "Brauchen Sie Hilfe? Rufen Sie kostenlos 1777 an.",
		"track.title": "Ihr Dokument verfolgen", "track.hello": "Guten Tag", "track.status": "Status",
		"track.where": "Wo", "track.until": "Abholen bis", "track.help": "Brauchen Sie Hilfe? Rufen Sie kostenlos 1777 an.",
		"track.language": "Sprache", "track.unknown": "Wir finden dieses Dokument nicht. Prüfen Sie den Link oder rufen Sie 1777 an.",
		"status.preparing": "Wir bereiten Ihr Dokument vor.", "status.ready": "Ihr Dokument liegt im Abholschrank bereit.",
		"status.collected": "Sie haben Ihr Dokument abgeholt.", "status.returning": "Die Frist ist vorbei. Ihr Dokument geht zurück an den Schalter.",
		"status.counter": "Ihr Dokument liegt am Schalter.", "status.cancelled": "Diese Abholung wurde storniert. Rufen Sie 1777 an.",
	},
}
