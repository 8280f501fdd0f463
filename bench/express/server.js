// The anchor: the seed's Express endpoint for creating a Payment Intent, in plain JavaScript,
// calling the Stripe emulator through the official stripe package. Stores nothing.
// Environment: STRIPE_SECRET_KEY, STRIPE_HOST, STRIPE_PORT, PORT.
const express = require('express');
const Stripe = require('stripe');

const stripe = new Stripe(process.env.STRIPE_SECRET_KEY, {
  host: process.env.STRIPE_HOST,
  port: Number(process.env.STRIPE_PORT),
  protocol: 'http',
});

const app = express();
app.use(express.json());

app.post('/api/create-payment-intent', async (req, res) => {
  const { amount, currency = 'usd' } = req.body;

  const paymentIntent = await stripe.paymentIntents.create({
    amount,
    currency,
  });

  res.json({ clientSecret: paymentIntent.client_secret });
});

app.listen(Number(process.env.PORT), '127.0.0.1');
